import { WriteBackConfigError } from '../write-back.errors.js';

export type WalMode = 'wal-sync' | 'wal-async';

/** Where the write-ahead log's messages go; Nest's `Logger` fits. */
export interface WalLogger {
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** Options of `WriteAheadLog.open()`. */
export interface WalOptions {
  /** Directory of the segment files; created when missing. One log per directory. */
  dir: string;
  /**
   * `wal-sync`: `append` resolves once its record is fsynced (group commit: one fdatasync covers every waiting
   * append). `wal-async`: `append` resolves once the record is buffered; the log is fsynced every `syncIntervalMs`,
   * so a crash loses at most that window.
   */
  mode: WalMode;
  /** With `wal-async`, ms between fdatasyncs. Not used with `wal-sync`. */
  syncIntervalMs: number;
  /**
   * Segment files are zero-filled to this size when created (the next one in the background, once the active one
   * is half full), and a new one is started once the active one holds this many bytes. Segments are deleted whole,
   * once every record in them has been flushed.
   * @default 16777216 (16 MiB)
   */
  segmentBytes?: number;
  /**
   * What start-up does with a damaged record that is not the torn tail of the newest segment: stop with
   * `WalCorruptionError` (`fail`), or replay the readable records around it and log a warning (`skip`).
   * @default 'fail'
   */
  corruption?: 'fail' | 'skip';
  /** @default a logger that prints warnings and errors to the console */
  logger?: WalLogger;
  /** Who holds the log, written into its lock file so a conflict names it (the write-back instance name). */
  owner?: string;
}

export interface ResolvedWalOptions {
  readonly dir: string;
  readonly mode: WalMode;
  readonly syncIntervalMs: number;
  readonly segmentBytes: number;
  readonly corruption: 'fail' | 'skip';
  readonly logger: WalLogger;
  readonly owner: string | undefined;
}

export const WAL_DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024;

const consoleLogger: WalLogger = {
  log: () => undefined,
  warn: (message) => console.warn(`[WriteAheadLog] ${message}`),
  error: (message) => console.error(`[WriteAheadLog] ${message}`),
};

/** Fills in defaults and rejects bad values with an error naming the option. */
export function resolveWalOptions(options: WalOptions): ResolvedWalOptions {
  const { dir, mode, syncIntervalMs, segmentBytes = WAL_DEFAULT_SEGMENT_BYTES, corruption = 'fail' } = options;
  if (typeof dir !== 'string' || dir === '') throw new WriteBackConfigError('dir', 'expected a directory path');
  if (mode !== 'wal-sync' && mode !== 'wal-async') {
    throw new WriteBackConfigError('mode', `expected "wal-sync" or "wal-async", got ${JSON.stringify(mode)}`);
  }
  if (mode === 'wal-async' && !(Number.isFinite(syncIntervalMs) && syncIntervalMs > 0)) {
    throw new WriteBackConfigError('syncIntervalMs', `expected a positive number of ms, got ${String(syncIntervalMs)}`);
  }
  if (!Number.isSafeInteger(segmentBytes) || segmentBytes <= 0) {
    throw new WriteBackConfigError('segmentBytes', `expected a positive integer, got ${String(segmentBytes)}`);
  }
  if (corruption !== 'fail' && corruption !== 'skip') {
    throw new WriteBackConfigError('corruption', `expected "fail" or "skip", got ${JSON.stringify(corruption)}`);
  }
  return { dir, mode, syncIntervalMs, segmentBytes, corruption, logger: options.logger ?? consoleLogger, owner: options.owner };
}
