import type { WriteBackDurability, WriteBackWalCorruption } from '../write-back.options.js';

export type WalMode = Exclude<WriteBackDurability, 'none'>;

/** Where the write-ahead log's messages go; Nest's `Logger` fits. */
export interface WalLogger {
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/**
 * Options of `WriteAheadLog.open()`, already resolved and validated by `resolveWriteBackOptions` (whose
 * `wal*` options they come from, see their JSDoc): the log takes them as given.
 */
export interface WalOptions {
  /** Directory of the segment files (`walDir`); created when missing. One log per directory. */
  readonly dir: string;
  /**
   * `wal-sync`: `append` resolves once its record is fsynced (group commit: one fdatasync covers every waiting
   * append). `wal-async`: `append` resolves once the record is buffered; the log is fsynced every `syncIntervalMs`.
   */
  readonly mode: WalMode;
  /** `walSyncIntervalMs`: with `wal-async`, ms between fdatasyncs. Not used with `wal-sync`. */
  readonly syncIntervalMs: number;
  /**
   * `walSegmentBytes`: segment files are zero-filled to this size when created (the next one in the background,
   * once the active one is half full), and a new one is started once the active one holds this many bytes.
   * Segments are deleted whole, once every record in them has been flushed.
   */
  readonly segmentBytes: number;
  /**
   * `walCorruption`: what start-up does with a damaged record that is not the torn tail of the newest segment:
   * stop with `WalCorruptionError` (`fail`), or replay the readable records around it with a warning (`skip`).
   */
  readonly corruption: WriteBackWalCorruption;
  readonly logger: WalLogger;
  /** Who holds the log, written into its lock file so a conflict names it (the write-back instance name). */
  readonly owner?: string;
}
