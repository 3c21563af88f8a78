export { WriteAheadLog } from './write-ahead-log.js';
export type { WalStats } from './write-ahead-log.js';
export type { WalLogger, WalMode, WalOptions } from './wal-options.js';
export type { WalRecord } from './wal-codec.js';
export { WalCorruptionError, WalIoError } from '../write-back.errors.js';
