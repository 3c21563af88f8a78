/**
 * Every error this library raises extends {@link WriteBackError}, so callers can tell ours from the driver's
 * with one `instanceof`. Messages name the option or input to change.
 */
export class WriteBackError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An option passed to `WriteBackModule.forRoot()` / `forRootAsync()` is missing or out of range. */
export class WriteBackConfigError extends WriteBackError {
  constructor(
    /** The option (or environment variable) at fault. */
    readonly option: string,
    problem: string,
  ) {
    super(`Invalid write-back option "${option}": ${problem}`);
  }
}

/** Bad input at the call: nothing was cached, logged or queued. */
export class WriteBackValidationError extends WriteBackError {}

/** The key is not a non-empty string within `maxKeyLength`, or contains a NUL character. */
export class WriteBackInvalidKeyError extends WriteBackValidationError {}

/** The value cannot be stored as Postgres jsonb (undefined, BigInt, cycles, functions, symbols, `\u0000`, lone surrogates). */
export class WriteBackInvalidValueError extends WriteBackValidationError {}

/**
 * An `increment` or `merge` that cannot apply: not an integer, not an object, a number and an object mixed on one
 * key, a sum past `Number.MAX_SAFE_INTEGER`, or (found at flush, then dead-lettered) a stored value of the wrong type.
 */
export class WriteBackInvalidDeltaError extends WriteBackValidationError {
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`Cannot apply the change to key "${truncate(key)}": ${reason}.`);
  }
}

/** The serialized value is larger than `maxValueBytes`. */
export class WriteBackValueTooLargeError extends WriteBackValidationError {
  constructor(
    readonly key: string,
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(
      `Value for key "${truncate(key)}" is ${bytes} bytes of JSON, over the limit of ${limit}. ` +
        `Store a smaller value or raise the "maxValueBytes" option.`,
    );
  }
}

/**
 * `maxDirtyEntries` unflushed entries (or `maxDirtyBytes` of them) are already held: the write was not accepted.
 * Raised at once with `backpressure: 'reject'`, or after `backpressureTimeoutMs` with `backpressure: 'block'`.
 * `option` names the bound that was reached; `dirty` and `limit` are in its unit (entries or characters).
 */
export class WriteBackOverloadedError extends WriteBackError {
  constructor(
    readonly dirty: number,
    readonly limit: number,
    mode: 'block' | 'reject',
    waitedMs?: number,
    readonly option: 'maxDirtyEntries' | 'maxDirtyBytes' = 'maxDirtyEntries',
  ) {
    super(
      `Write-back cache is full: ${dirty} unflushed ${option === 'maxDirtyBytes' ? 'bytes' : 'entries'} (${option}=${limit})` +
        (mode === 'block' ? ` and none was flushed within backpressureTimeoutMs=${waitedMs}.` : '.') +
        ` The write was not accepted. Potential solutions: raise "${option}", raise "flushConcurrency" or ` +
        '"batchSize" so flushes keep up, ' +
        (mode === 'reject' ? 'use backpressure: "block" to wait for room, ' : 'raise "backpressureTimeoutMs", ') +
        'or check that Postgres is reachable (see the readiness probe).',
    );
  }
}

/** The service is shutting down (or has shut down) and accepts no more writes. */
export class WriteBackClosedError extends WriteBackError {
  constructor(operation: string) {
    super(`Write-back service is shutting down: ${operation} was not accepted.`);
  }
}

/** `flush({ timeoutMs })` ran out of time; the entries it waited for stay dirty and will still be flushed. */
export class WriteBackFlushTimeoutError extends WriteBackError {
  constructor(
    readonly pending: number,
    timeoutMs: number,
  ) {
    super(
      `flush() timed out after ${timeoutMs} ms with ${pending} entries not yet committed. ` +
        'They stay queued and will be flushed when Postgres accepts them.',
    );
  }
}

/** A `writeThrough` write was accepted into the cache but Postgres did not commit it. */
export class WriteBackWriteThroughError extends WriteBackError {
  constructor(
    readonly key: string,
    readonly code: string | undefined,
    cause: unknown,
    queued: boolean,
  ) {
    super(
      `Write-through of key "${truncate(key)}" failed${code ? ` (${code})` : ''}: ${errorMessage(cause)}. ` +
        (queued
          ? 'The write stays queued and the flusher will retry it.'
          : 'The write was moved to the dead-letter table.'),
      { cause },
    );
  }
}

/** The first connection to Postgres failed on every attempt (`retryAttempts` + 1). */
export class WriteBackConnectionError extends WriteBackError {
  constructor(
    readonly target: { host: string; port: string; database: string },
    readonly attempt: number,
    readonly attempts: number,
    cause: unknown,
  ) {
    super(
      `Could not connect to Postgres at ${target.host}:${target.port}, database "${target.database}" ` +
        `(attempt ${attempt} of ${attempts}): ${errorMessage(cause) || 'no answer'}.` +
        (attempt >= attempts
          ? ' Check the "url" option (DATABASE_URL in the demo), that the server is up and reachable from here, ' +
            'or raise "retryAttempts" / "retryDelay" if it starts after the application.'
          : ''),
      { cause },
    );
  }
}

/** A second `WriteBackModule.forRoot()` / `forRootAsync()` of the same instance name in one application. */
export class WriteBackDuplicateInstanceError extends WriteBackError {
  constructor(
    readonly instance: string,
    importers: readonly string[],
  ) {
    super(
      `WriteBackModule.forRoot() for the instance "${instance}" is registered more than once ` +
        `(imported by ${importers.join(', ')}). Each instance opens its own pool and flusher over the same tables. ` +
        'Potential solutions: call forRoot once (in AppModule; it is global by default) and inject WriteBackService ' +
        'anywhere, or give the second one its own "name".',
    );
  }
}

/** No dead letter has this id. */
export class WriteBackDeadLetterNotFoundError extends WriteBackError {
  constructor(readonly id: string) {
    super(`Dead letter ${id} does not exist (it may have been replayed or discarded already).`);
  }
}

/**
 * `flush()` found entries still dirty that are neither queued nor being written, so waiting longer would never
 * end. A bug of this library: please report it with the log lines before it.
 */
export class WriteBackFlushStalledError extends WriteBackError {
  constructor() {
    super('write-back flush stalled: dirty entries are neither queued nor in flight');
  }
}

/** Two entities of `WriteBackModule.forFeature` on one instance share a name, so their keys would mix. */
export class WriteBackDuplicateEntityError extends WriteBackError {
  constructor(readonly entity: string) {
    super(
      `Two entities named ${entity} are written behind by one instance. ` +
        'Potential solutions: give one of them another entity name, or register it on a named instance of its own.',
    );
  }
}

/**
 * A key of an entity (from the write-ahead log, or a dead letter) reached an instance whose
 * `WriteBackModule.forFeature` does not list that entity.
 */
export class WriteBackEntityNotRegisteredError extends WriteBackError {
  constructor(readonly entity: string) {
    super(
      `Entity ${entity} is not registered with WriteBackModule.forFeature on this instance. ` +
        'Potential solutions: add it to WriteBackModule.forFeature([...]) of this instance (its "name" included).',
    );
  }
}

/** Another live process, or another user in this one, holds the lock file of a directory needed here. */
export class WriteBackDirectoryInUseError extends WriteBackError {
  constructor(
    readonly lockPath: string,
    readonly ownerPid: number,
    /** What the lock file says holds it (e.g. `write-back instance "audit"`), when it says. */
    readonly holder: string | undefined,
    what: string,
    remedy: string,
  ) {
    const by = ownerPid === process.pid ? 'this process (pid ' + ownerPid + ')' : `process ${ownerPid}`;
    super(
      `${what} is in use by ${holder === undefined ? by : `${holder} of ${by}`} (lock file ${lockPath}). ${remedy}` +
        (ownerPid === process.pid ? '' : ' (Delete the lock file only if that process is not using it.)'),
    );
  }
}

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

export function truncate(text: string, max = 80): string {
  return text.length <= max ? text : `${text.slice(0, max)}...`;
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
