import type { InjectionToken, ModuleMetadata, OptionalFactoryDependency, Provider, Type } from '@nestjs/common';
import type { WriteBackModuleOptions } from './write-back.options.js';

/** Settings that shape the provider graph, so they are given synchronously, never by a factory. */
export interface WriteBackInstanceOptions {
  /** Name of this instance, to run several (inject with `@InjectWriteBack(name)`). @default 'default' */
  name?: string;
  /** Register the module globally, like `TypeOrmModule.forRoot`. @default true */
  isGlobal?: boolean;
}

export interface WriteBackOptionsFactory {
  createWriteBackOptions(): Promise<WriteBackModuleOptions> | WriteBackModuleOptions;
}

export interface WriteBackModuleAsyncOptions extends WriteBackInstanceOptions, Pick<ModuleMetadata, 'imports'> {
  useFactory?: (...args: any[]) => Promise<WriteBackModuleOptions> | WriteBackModuleOptions;
  inject?: (InjectionToken | OptionalFactoryDependency)[];
  useClass?: Type<WriteBackOptionsFactory>;
  useExisting?: Type<WriteBackOptionsFactory>;
  /** More providers to register in the module (e.g. what the factory injects). */
  extraProviders?: Provider[];
}
