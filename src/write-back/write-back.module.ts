import { Logger, Module, type DynamicModule, type Provider } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ModuleRef, ModulesContainer } from '@nestjs/core';
import { createFlushTimer, type TimeoutRegistry } from './flush/flush-timer.js';
import { WriteBackHealthIndicator } from './health/write-back.health.js';
import { WriteBackMetrics } from './metrics/write-back.metrics.js';
import { WriteBackStore } from './store/write-back.store.js';
import { WriteAheadLog, type WalRecord } from './wal/index.js';
import {
  DEFAULT_WRITE_BACK_NAME,
  getWriteBackHealthIndicatorToken,
  getWriteBackMetricsToken,
  getWriteBackOptionsToken,
  getWriteBackRepositoryToken,
  getWriteBackServiceToken,
} from './write-back.constants.js';
import { EntitySchema, type EntityTarget, type ObjectLiteral } from 'typeorm';
import { WriteBackRepository } from './entities/write-back.repository.js';
import { WriteBackConfigError, WriteBackDuplicateInstanceError } from './write-back.errors.js';
import { startReplication } from './store/replication.js';
import type {
  WriteBackInstanceOptions,
  WriteBackModuleAsyncOptions,
  WriteBackOptionsFactory,
} from './write-back.interfaces.js';
import {
  checkInstanceName,
  resolveWriteBackOptions,
  type ResolvedWriteBackOptions,
  type WriteBackModuleOptions,
} from './write-back.options.js';
import { WriteBackService } from './write-back.service.js';

/**
 * A write-back cache in front of Postgres. `forRoot` / `forRootAsync` register a `WriteBackService` (injected by
 * class, or with `@InjectWriteBack(name)` for named instances), its `WriteBackHealthIndicator` and its
 * `WriteBackMetrics`. Global by default, like `TypeOrmModule.forRoot`: call it once, in the root module.
 *
 * The options are resolved and checked when the service is built, so a test that overrides `WriteBackService`
 * needs neither valid options nor a database. The module never imports `ScheduleModule.forRoot()` (the host
 * app's `@Cron` / `@Interval` jobs would run twice); it registers its timer with the app's `SchedulerRegistry`
 * when there is one, and starts it in `onApplicationBootstrap`.
 */
@Module({})
export class WriteBackModule {
  static forRoot(options: WriteBackModuleOptions & WriteBackInstanceOptions): DynamicModule {
    const { name, isGlobal, ...moduleOptions } = options ?? ({} as WriteBackModuleOptions);
    return this.build(name, isGlobal, [{ provide: rawOptionsToken(name), useValue: moduleOptions }]);
  }

  static forRootAsync(options: WriteBackModuleAsyncOptions): DynamicModule {
    const rawToken = rawOptionsToken(options.name);
    const providers: Provider[] = [...(options.extraProviders ?? [])];
    if (options.useFactory) {
      providers.push({ provide: rawToken, useFactory: options.useFactory, inject: options.inject ?? [] });
    } else if (options.useClass || options.useExisting) {
      const factoryClass = (options.useClass ?? options.useExisting)!;
      if (options.useClass) providers.push({ provide: factoryClass, useClass: factoryClass });
      providers.push({
        provide: rawToken,
        useFactory: (factory: WriteBackOptionsFactory) => factory.createWriteBackOptions(),
        inject: [factoryClass],
      });
    } else {
      throw new WriteBackConfigError('forRootAsync', 'give one of useFactory, useClass or useExisting');
    }
    const module = this.build(options.name, options.isGlobal, providers);
    return { ...module, imports: [...(module.imports ?? []), ...(options.imports ?? [])] };
  }

  /**
   * Write-behind for the application's own entities: registers a `WriteBackRepository<Entity>` for each (inject it
   * with `@InjectWriteBackRepository(Entity, name?)`), on the instance `name` (the default one when omitted), sharing
   * its pool, flusher, WAL, dead letters, health and metrics. The entities must be in the DataSource that instance
   * uses (the app's own with `dataSource`; with `url`, list them in `forRoot({ entities })`); each is checked at
   * start (primary key, no relations, column types the flush can send) with a `WriteBackConfigError` naming it.
   */
  static forFeature(entities: WriteBackFeatureEntity[], name?: string): DynamicModule {
    if (!Array.isArray(entities) || entities.length === 0) {
      throw new WriteBackConfigError('forFeature', 'give an array of one or more TypeORM entities');
    }
    const serviceToken = getWriteBackServiceToken(name);
    const providers: Provider[] = entities.map((feature) => {
      const { entity, versionColumn } = featureEntity(feature);
      return {
      provide: getWriteBackRepositoryToken(entity, name),
      useFactory: (service: WriteBackService) => {
        if (!(service instanceof WriteBackService)) {
          throw new WriteBackConfigError(
            'forFeature',
            `the write-back service of instance "${name ?? DEFAULT_WRITE_BACK_NAME}" was replaced (a test override); ` +
              `override ${getWriteBackRepositoryToken(entity, name)} too`,
          );
        }
        return new WriteBackRepository(service, service.registerEntity(entity, versionColumn));
      },
      inject: [serviceToken],
      };
    });
    return { module: WriteBackModule, providers, exports: providers };
  }

  private static build(name: string | undefined, isGlobal: boolean | undefined, optionProviders: Provider[]): DynamicModule {
    // The name shapes the provider graph (tokens), so it is checked now; every other option when the service is built.
    const instance = name ?? DEFAULT_WRITE_BACK_NAME;
    checkInstanceName(instance);
    const serviceToken = getWriteBackServiceToken(name);
    const optionsToken = getWriteBackOptionsToken(name);
    const healthToken = getWriteBackHealthIndicatorToken(name);
    const metricsToken = getWriteBackMetricsToken(name);
    return {
      module: WriteBackModule,
      global: isGlobal ?? true,
      providers: [
        ...optionProviders,
        {
          provide: serviceToken,
          useFactory: (raw: WriteBackModuleOptions, moduleRef: ModuleRef, modules: ModulesContainer) => {
            assertSingleRoot(modules, serviceToken, instance);
            return createService(resolveWriteBackOptions(raw, instance), moduleRef, instance);
          },
          inject: [rawOptionsToken(name), ModuleRef, ModulesContainer],
        },
        {
          // The service's own copy: whatever replaces the service in a test decides what the options are.
          provide: optionsToken,
          useFactory: (service: WriteBackService) => (service as Partial<WriteBackService>)?.options,
          inject: [serviceToken],
        },
        {
          provide: healthToken,
          useFactory: (service: WriteBackService) => new WriteBackHealthIndicator(service),
          inject: [serviceToken],
        },
        {
          // Undefined when the optional peer prom-client is not installed, or when a test replaced the service.
          provide: metricsToken,
          useFactory: (service: WriteBackService) =>
            service instanceof WriteBackService ? WriteBackMetrics.create(service, instance) : undefined,
          inject: [serviceToken],
        },
      ],
      exports: [optionsToken, serviceToken, healthToken, metricsToken],
    };
  }
}

/**
 * An entity for `forFeature`: the entity itself, or `{ entity, versionColumn }` naming a bigint column that holds the
 * module's write versions, so Postgres skips writes older than the row (see the README's "Entities" section).
 */
export type WriteBackFeatureEntity = EntityTarget<ObjectLiteral> | { entity: EntityTarget<ObjectLiteral>; versionColumn?: string };

function featureEntity(feature: WriteBackFeatureEntity): { entity: EntityTarget<ObjectLiteral>; versionColumn?: string } {
  if (feature !== null && typeof feature === 'object' && 'entity' in feature && !(feature instanceof EntitySchema)) {
    return feature as { entity: EntityTarget<ObjectLiteral>; versionColumn?: string };
  }
  return { entity: feature as EntityTarget<ObjectLiteral> };
}

function rawOptionsToken(name: string | undefined): string {
  return `WriteBackRawOptions:${name ?? DEFAULT_WRITE_BACK_NAME}`;
}

/**
 * Two roots of one instance would open two pools and two flushers over the same tables, each serving its own
 * cached copies: refused at start, naming the modules that import them.
 */
function assertSingleRoot(modules: ModulesContainer, serviceToken: unknown, instance: string): void {
  const roots = [...modules.values()].filter(
    (module) => module.metatype === WriteBackModule && module.providers.has(serviceToken as string),
  );
  if (roots.length < 2) return;
  const importers = [...modules.values()]
    .filter((module) => roots.some((root) => module.imports.has(root)))
    .map((module) => module.metatype?.name ?? '(anonymous module)');
  throw new WriteBackDuplicateInstanceError(instance, importers.length > 0 ? importers : ['unknown modules']);
}

async function createService(options: ResolvedWriteBackOptions, moduleRef: ModuleRef, name: string): Promise<WriteBackService> {
  const logger = new Logger('WriteBackModule');
  const ownsDataSource = options.dataSource === undefined;
  const dataSource =
    options.dataSource ??
    (await WriteBackStore.connect(options, { attempts: options.retryAttempts, delayMs: options.retryDelay, logger }));
  try {
    if (!dataSource.isInitialized) {
      throw new WriteBackConfigError('dataSource', 'the DataSource is not initialized; call initialize() first');
    }
    const schema = options.schema ?? (dataSource.options as { schema?: string }).schema;
    if (options.runMigrations) await WriteBackStore.migrate(dataSource, ownsDataSource, schema);
    const { wal, recovered } = await openWal(options, name);
    // The delta ledger knows this instance by its origin; with a WAL it must survive restarts (a replayed delta
    // whose first flush committed is then recognised), so it lives beside the log.
    const deltaOrigin = wal === undefined ? randomUUID() : await persistentOrigin(options.walDir);
    const store = new WriteBackStore(dataSource, schema, options.statementTimeoutMs, deltaOrigin);
    const replication = await startReplication(options, store, dataSource);
    const timer = createFlushTimer(`write-back-flush:${name}`, await schedulerRegistryFinder(moduleRef));
    const service = new WriteBackService(options, store, ownsDataSource, timer, name, wal, recovered, replication);
    await service.startListening();
    logger.log(
      `Write-back "${name}" ready: durability=${options.durability}, flushIntervalMs=${options.flushIntervalMs}, ` +
        `batchSize=${options.batchSize}, flushConcurrency=${options.flushConcurrency}, autoFlush=${options.autoFlush}` +
        (schema ? `, schema=${schema}` : ''),
    );
    return service;
  } catch (error) {
    if (ownsDataSource && dataSource.isInitialized) await dataSource.destroy();
    throw error;
  }
}

/**
 * Finds the app's `SchedulerRegistry` (from its own `ScheduleModule.forRoot()`), if it has one. `@nestjs/schedule`
 * is an optional peer, loaded only to name the token.
 */
async function schedulerRegistryFinder(moduleRef: ModuleRef): Promise<() => TimeoutRegistry | undefined> {
  let token: unknown;
  try {
    token = (await import('@nestjs/schedule')).SchedulerRegistry;
  } catch {
    return () => undefined;
  }
  return () => {
    try {
      return moduleRef.get(token as typeof import('@nestjs/schedule').SchedulerRegistry, { strict: false });
    } catch {
      return undefined;
    }
  };
}

/** The origin id kept in `walDir/origin`: created (and fsynced) once, then read back at every start. */
async function persistentOrigin(walDir: string): Promise<string> {
  const file = path.join(walDir, 'origin');
  const found = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (found !== '') return found;
  const origin = randomUUID();
  const handle = await open(file, 'w');
  try {
    await handle.writeFile(`${origin}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return origin;
}

/** Opens (and replays) the write-ahead log when durability asks for one. */
async function openWal(
  options: ResolvedWriteBackOptions,
  name: string,
): Promise<{ wal?: WriteAheadLog; recovered: WalRecord[] }> {
  if (options.durability === 'none') return { recovered: [] };
  return WriteAheadLog.open({
    dir: options.walDir,
    mode: options.durability,
    syncIntervalMs: options.walSyncIntervalMs,
    segmentBytes: options.walSegmentBytes,
    corruption: options.walCorruption,
    owner: name,
    logger: new Logger(name === DEFAULT_WRITE_BACK_NAME ? 'WriteAheadLog' : `WriteAheadLog:${name}`),
  });
}
