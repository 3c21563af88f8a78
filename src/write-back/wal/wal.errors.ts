import { errorMessage, WriteBackError } from '../write-back.errors.js';

/**
 * A WAL segment holds a record that fails its checksum or cannot be decoded somewhere other than the torn tail
 * of the newest segment, so acknowledged writes may be damaged. Start-up stops rather than serve without them.
 */
export class WalCorruptionError extends WriteBackError {
  constructor(
    /** Path of the segment file. */
    readonly file: string,
    /** Byte offset of the bad record in that file. */
    readonly offset: number,
    /** What is wrong with it. */
    readonly reason: string,
  ) {
    super(
      `Write-ahead log segment ${file} is corrupt at byte ${offset}: ${reason}. ` +
        'Records after that point may belong to acknowledged writes, so start-up stopped. Potential solutions: ' +
        'restore the file from a backup, or open the log with corruption: "skip" to replay every readable record ' +
        'and drop the damaged ones (their writes are lost unless Postgres already has them).',
    );
  }
}

/**
 * Writing, syncing or creating a WAL file failed. The log stops accepting appends: after a failed fsync the
 * kernel may have dropped the dirty pages, so nothing written since the last good sync can be trusted.
 */
export class WalIoError extends WriteBackError {
  constructor(
    readonly file: string,
    operation: string,
    cause: unknown,
  ) {
    super(
      `Write-ahead log ${operation} of ${file} failed: ${errorMessage(cause)}. The log accepts no more writes; ` +
        'check the disk (space, permissions, I/O errors) and restart: acknowledged writes are replayed from the log.',
      { cause },
    );
  }
}
