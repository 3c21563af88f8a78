export { WriteBackModule } from './write-back.module.js';
export type { WriteBackFeatureEntity } from './write-back.module.js';
export { WriteBackService } from './write-back.service.js';
export type { WriteBackSetOptions, WriteBackDeleteOptions, WriteBackStats } from './write-back.service.js';
export type {
  WriteBackInstanceOptions,
  WriteBackModuleAsyncOptions,
  WriteBackOptionsFactory,
} from './write-back.interfaces.js';
export {
  WRITE_BACK_DEFAULTS,
  resolveWriteBackOptions,
  writeBackEnvName,
  writeBackOptionsFromEnv,
} from './write-back.options.js';
export type {
  ResolvedWriteBackOptions,
  WriteBackBackpressure,
  WriteBackDurability,
  WriteBackModuleOptions,
  WriteBackPriority,
  WriteBackWalCorruption,
} from './write-back.options.js';
export {
  getWriteBackHealthIndicatorToken,
  getWriteBackMetricsToken,
  getWriteBackOptionsToken,
  getWriteBackRepositoryToken,
  getWriteBackServiceToken,
} from './write-back.constants.js';
export {
  InjectWriteBack,
  InjectWriteBackHealthIndicator,
  InjectWriteBackMetrics,
  InjectWriteBackRepository,
} from './write-back.decorators.js';
export { WriteBackRepository } from './entities/write-back.repository.js';
export type { WriteBackEntityId, WriteBackNumericColumn } from './entities/write-back.repository.js';
export { WriteBackExceptionFilter, writeBackErrorStatus } from './http/write-back-exception.filter.js';
export type { WriteBackErrorBody } from './http/write-back-exception.filter.js';
export {
  WalCorruptionError,
  WalIoError,
  WriteBackClosedError,
  WriteBackConfigError,
  WriteBackConnectionError,
  WriteBackDeadLetterNotFoundError,
  WriteBackDirectoryInUseError,
  WriteBackDuplicateEntityError,
  WriteBackDuplicateInstanceError,
  WriteBackEntityNotRegisteredError,
  WriteBackError,
  WriteBackFlushStalledError,
  WriteBackFlushTimeoutError,
  WriteBackInvalidDeltaError,
  WriteBackInvalidKeyError,
  WriteBackInvalidValueError,
  WriteBackOverloadedError,
  WriteBackValidationError,
  WriteBackValueTooLargeError,
  WriteBackWriteThroughError,
} from './write-back.errors.js';
export { WriteBackHealthIndicator } from './health/write-back.health.js';
export { WriteBackMetrics } from './metrics/write-back.metrics.js';
export type { WriteBackHealth, WriteBackHealthResult } from './health/write-back.health.js';
export type { WriteBackMetricsRegistry } from './metrics/write-back.metrics.js';
export type { FlushReport } from './model/types.js';
export type { CircuitState } from './model/types.js';
export type { WriteBackDeadLetter } from './store/write-back.store.js';
export { WRITE_BACK_ENTITIES, WRITE_BACK_MIGRATIONS, WRITE_BACK_MIGRATIONS_TABLE } from './store/index.js';
export { WriteBackEntryEntity } from './store/write-back-entry.entity.js';
export { WriteBackDeadLetterEntity } from './store/write-back-dead-letter.entity.js';
