import { Logger, Module, type DynamicModule, type Provider } from '@nestjs/common';
import { ScheduleModule, SchedulerRegistry } from '@nestjs/schedule';
import type { FlushTimer } from './flush/flusher.js';
import { WriteBackHealthIndicator } from './health/write-back.health.js';
import { WriteBackMetrics } from './metrics/write-back.metrics.js';
import { WriteBackStore } from './store/write-back.store.js';
import { WriteAheadLog, type WalRecord } from './wal/index.js';
import { startReplication } from './store/replication.js';
import { DEFAULT_WRITE_BACK_NAME, getWriteBackOptionsToken, getWriteBackServiceToken } from './write-back.constants.js';
import { WriteBackConfigError } from './write-back.errors.js';
import type {
  WriteBackInstanceOptions,
  WriteBackModuleAsyncOptions,
  WriteBackOptionsFactory,
} from './write-back.interfaces.js';
import { resolveWriteBackOptions, type ResolvedWriteBackOptions, type WriteBackModuleOptions } from './write-back.options.js';
import { WriteBackService } from './write-back.service.js';

/**
 * A write-back cache in front of Postgres. `forRoot` / `forRootAsync` register a `WriteBackService` (injected by
 * class, or with `@InjectWriteBack(name)` for named instances) and a `WriteBackHealthIndicator`.
 */
@Module({})
export class WriteBackModule {
  static forRoot(options: WriteBackModuleOptions & WriteBackInstanceOptions): DynamicModule {
    const { name, isGlobal, ...moduleOptions } = options;
    const rawToken = rawOptionsToken(name);
    return this.build(name, isGlobal, [{ provide: rawToken, useValue: moduleOptions }]);
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

  private static build(name: string | undefined, isGlobal: boolean | undefined, optionProviders: Provider[]): DynamicModule {
    const instance = name ?? DEFAULT_WRITE_BACK_NAME;
    const optionsToken = getWriteBackOptionsToken(name);
    const serviceToken = getWriteBackServiceToken(name);
    const isDefault = name === undefined || name === DEFAULT_WRITE_BACK_NAME;
    const healthToken = isDefault ? WriteBackHealthIndicator : `WriteBackHealthIndicator:${name}`;
    const metricsToken = isDefault ? WriteBackMetrics : `WriteBackMetrics:${name}`;
    return {
      module: WriteBackModule,
      global: isGlobal ?? false,
      imports: [ScheduleModule.forRoot()],
      providers: [
        ...optionProviders,
        {
          provide: optionsToken,
          useFactory: (raw: WriteBackModuleOptions) => resolveWriteBackOptions(raw),
          inject: [rawOptionsToken(name)],
        },
        {
          provide: serviceToken,
          useFactory: (options: ResolvedWriteBackOptions, registry: SchedulerRegistry) =>
            createService(options, registry, instance),
          inject: [optionsToken, SchedulerRegistry],
        },
        {
          provide: healthToken,
          useFactory: (service: WriteBackService) => new WriteBackHealthIndicator(service),
          inject: [serviceToken],
        },
        {
          // Undefined when the optional peer prom-client is not installed.
          provide: metricsToken,
          useFactory: (service: WriteBackService) => WriteBackMetrics.create(service, instance),
          inject: [serviceToken],
        },
      ],
      exports: [optionsToken, serviceToken, healthToken, metricsToken],
    };
  }
}

function rawOptionsToken(name: string | undefined): string {
  return `WriteBackRawOptions:${name ?? DEFAULT_WRITE_BACK_NAME}`;
}

async function createService(options: ResolvedWriteBackOptions, registry: SchedulerRegistry, name: string): Promise<WriteBackService> {
  const logger = new Logger('WriteBackModule');
  const ownsDataSource = options.dataSource === undefined;
  const dataSource = options.dataSource ?? (await WriteBackStore.connect(options));
  try {
    if (!dataSource.isInitialized) {
      throw new WriteBackConfigError('dataSource', 'the DataSource is not initialized; call initialize() first');
    }
    if (options.runMigrations) await WriteBackStore.migrate(dataSource, ownsDataSource);
    const schema = ownsDataSource ? options.schema : (dataSource.options as { schema?: string }).schema;
    const store = new WriteBackStore(dataSource, schema, options.statementTimeoutMs);
    const replication = await startReplication(options, store, dataSource);
    const { wal, recovered } = await openWal(options, name);
    const service = new WriteBackService(
      options,
      store,
      ownsDataSource,
      registryTimer(registry, `write-back-flush:${name}`),
      name,
      wal,
      recovered,
      replication,
    );
    await service.startListening();
    logger.log(
      `Write-back "${name}" ready: durability=${options.durability}, flushIntervalMs=${options.flushIntervalMs}, ` +
        `batchSize=${options.batchSize}, flushConcurrency=${options.flushConcurrency}, autoFlush=${options.autoFlush}`,
    );
    return service;
  } catch (error) {
    if (ownsDataSource && dataSource.isInitialized) await dataSource.destroy();
    throw error;
  }
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
    logger: new Logger(name === DEFAULT_WRITE_BACK_NAME ? 'WriteAheadLog' : `WriteAheadLog:${name}`),
  });
}

/** The flush timer, registered with SchedulerRegistry so it is visible (and removable) like any Nest timer. */
function registryTimer(registry: SchedulerRegistry, name: string): FlushTimer {
  let handle: NodeJS.Timeout | undefined;
  const clear = () => {
    if (handle === undefined) return;
    clearTimeout(handle);
    if (registry.doesExist('timeout', name)) registry.deleteTimeout(name);
    handle = undefined;
  };
  return {
    set(callback, delayMs) {
      clear();
      handle = setTimeout(callback, delayMs);
      // The app's own handles (HTTP server...) keep the process alive; a flush timer alone should not.
      handle.unref();
      registry.addTimeout(name, handle);
    },
    clear,
  };
}
