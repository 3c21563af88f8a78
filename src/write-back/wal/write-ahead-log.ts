import { writeSync } from 'node:fs';
import { open, readFile, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { errorMessage, WalIoError, WriteBackClosedError, WriteBackValidationError } from '../write-back.errors.js';
import { encodeRecord, invalidRecordReason, maxEncodedBytes, type WalRecord } from './wal-codec.js';
import {
  createZeroFilledFile,
  ensureDirectory,
  listSegmentIds,
  PREPARED_SEGMENT_FILE,
  segmentFileName,
  syncDirectory,
} from './wal-files.js';
import { lockDirectory } from './dir-lock.js';

/** The lock file inside walDir; not a segment, so replay ignores it. */
export const WAL_LOCK_FILE = 'wal.lock';
import type { WalOptions } from './wal-options.js';
import { scanSegment } from './wal-reader.js';
import { WalRetention, WalSegment } from './wal-retention.js';

/** Counters of `WriteAheadLog.stats()`. */
export interface WalStats {
  /**
   * Bytes of records in the segment files. Each file is zero-filled to `segmentBytes` when it is created, so the
   * disk holds about `segments x segmentBytes` (plus the next segment, prepared ahead).
   */
  bytes: number;
  /** fdatasync calls since open. */
  syncs: number;
  /** Segment files, the active one included. */
  segments: number;
  /** Records replay would still need: the newest record of each key, not yet settled. */
  pendingRecords: number;
}

/** Encoded records bound for one segment, written with one `write`. */
interface Chunk {
  readonly segment: WalSegment;
  buf: Buffer;
  length: number;
  /** Retention sequence number of the last record in it. */
  lastSequence: number;
}

/** The records of one write + fdatasync round, and the promise their `append` calls share. */
interface Group {
  readonly chunks: Chunk[];
  /** Encoded bytes. */
  bytes: number;
  /** Settles when the round is done: written and, with wal-sync, synced. Created when someone waits for it. */
  promise?: Promise<void>;
  resolve?: () => void;
  reject?: (error: Error) => void;
}

/** A zero-filled file waiting to become the next segment, or why it could not be made. */
type PreparedFile = { readonly file: string; readonly handle: FileHandle } | { readonly error: unknown };

interface OpenFile {
  readonly segment: WalSegment;
  readonly handle: FileHandle;
  position: number;
}

const RESOLVED: Promise<void> = Promise.resolve();
const INITIAL_CHUNK_BYTES = 64 * 1024;
/**
 * wal-async: once this many bytes wait to be written, `append` waits for the write (not the sync). Bounds the
 * buffer, and gives a caller that appends in a tight loop a real I/O wait, so the loop cannot starve the writer.
 */
const ASYNC_BUFFER_LIMIT = 4 * 1024 * 1024;
const MAX_SPARE_BYTES = 4 * 1024 * 1024;
/**
 * With wal-sync, a group of up to this many bytes is written with `writeSync` on the event-loop thread: copying it
 * into the page cache is quick, while an asynchronous write costs a thread-pool round trip whose completion waits
 * for the event loop, which the flusher can keep busy for milliseconds, and every waiting writer waits with it.
 * Bigger groups, and every wal-async write (nobody waits for it), go through the thread pool. The fdatasync is
 * always asynchronous. (Figures: bench/README.md, "Results and history".)
 */
const INLINE_WRITE_BYTES = 1024 * 1024;

/**
 * Yields to the event loop's check phase, so timers and I/O callbacks run between rounds that did no I/O wait of
 * their own (`await null` would not let them).
 */
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * The write-ahead log behind `durability: 'wal-sync' | 'wal-async'`: an append-only sequence of segment files in
 * one directory, each record framed by its length and CRC-32.
 *
 * Appends made while a write + fdatasync round is running are gathered into the next round, which writes them with
 * one `write` and makes them durable with one `fdatasync` (group commit): many writers share each disk flush.
 * Timers and I/O keep running under a steady stream of appends: each wal-sync round waits for its fdatasync in the
 * thread pool, and rounds without that wait (wal-async writes) are separated by `setImmediate`.
 *
 * Start-up (`open`) replays every segment and hands back the newest record of each key. The flusher then reports
 * what Postgres holds through `settle`, and segments no longer needed are deleted.
 */
export class WriteAheadLog {
  private readonly retention: WalRetention;
  /** Segments whose files exist or are about to, by id; deleted ones are removed. */
  private readonly segments = new Map<number, WalSegment>();
  /** Where new records go. Its file is opened by the write loop when the first of them is written. */
  private active!: WalSegment;
  /** Bytes assigned to `active`, written or still buffered. */
  private activeBytes = 0;
  private nextId: number;
  private file: OpenFile | undefined;
  /** Records appended since the current round started. */
  private pending: Group | undefined;
  /** The round being written. */
  private inFlight: Group | undefined;
  private running = false;
  private loop: Promise<void> = RESOLVED;
  /** Data written since the last fdatasync. */
  private unsynced = false;
  /** Retention sequence number of the last record written. */
  private writtenSequence = 0;
  /** wal-async: the sync timer fired and the loop owes an fdatasync. */
  private syncDue = false;
  private syncTimer: NodeJS.Timeout | undefined;
  private failure: WalIoError | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private syncs = 0;
  private bytes = 0;
  /** Unlinks run one after another, so files disappear in the order retention asked for. */
  private deletions: Promise<void> = RESOLVED;
  private readonly spareBuffers: Buffer[] = [];
  /** The next segment's file, zero-filled ahead of time under a temporary name (see `prepareSegmentFile`). */
  private prepared: Promise<PreparedFile> | undefined;

  private constructor(
    private readonly options: WalOptions,
    firstFreeId: number,
    private readonly unlock: () => Promise<void>,
  ) {
    this.nextId = firstFreeId;
    this.retention = new WalRetention((segment) => this.deleteSegment(segment));
  }

  /**
   * Opens the log in `options.dir`, replaying every segment in order. `recovered` holds the newest record of each
   * key (tombstones included), in log order; they count as pending until `settle` is called for them.
   *
   * A torn last record of the newest segment (a write cut short by a crash, which no fsync acknowledged) is cut off
   * with a warning. Any other damaged record throws `WalCorruptionError` naming the file and byte offset, or with
   * `corruption: 'skip'` is passed over with a warning. New records go to a new segment.
   */
  static async open(options: WalOptions): Promise<{ wal: WriteAheadLog; recovered: WalRecord[] }> {
    await ensureDirectory(options.dir);
    // Two processes appending to (and deleting) one log's segments would lose writes.
    const unlock = await lockDirectory(
      path.join(options.dir, WAL_LOCK_FILE),
      `The write-ahead log directory ${options.dir}`,
      'Give each process and each write-back instance its own walDir (in Kubernetes: one volume per pod, e.g. a StatefulSet).',
      options.owner === undefined ? undefined : `write-back instance "${options.owner}"`,
    );
    try {
      // Left by a crash while the next segment was being prepared: possibly short, never holding records.
      await rm(path.join(options.dir, PREPARED_SEGMENT_FILE), { force: true });
      const ids = await listSegmentIds(options.dir);
      const wal = new WriteAheadLog(options, ids.length === 0 ? 1 : ids[ids.length - 1]! + 1, unlock);
      const recovered = await wal.replay(ids);
      await wal.start();
      return { wal, recovered };
    } catch (error) {
      await unlock();
      throw error;
    }
  }

  /**
   * Logs `record`. With `wal-sync` the promise resolves once the record is on disk (written and fdatasynced);
   * with `wal-async` at once, the record being written promptly and synced within `syncIntervalMs` (unless over
   * 4 MiB are waiting to be written: then once the write is done, which bounds the buffer).
   *
   * A record whose version is not above the newest version of its key already in the log is not written (replay
   * keeps only the newest version per key); its promise resolves once that newer record is durable.
   * Rejects with `WriteBackClosedError` after `close()`, `WalIoError` once a write or sync has failed, and
   * `WriteBackValidationError` for a malformed record.
   */
  append(record: WalRecord): Promise<void> {
    if (this.closed) return Promise.reject(new WriteBackClosedError('WAL append'));
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const invalid = invalidRecordReason(record);
    if (invalid !== undefined) return Promise.reject(new WriteBackValidationError(`Invalid WAL record: ${invalid}.`));
    if (this.activeBytes >= this.options.segmentBytes) this.startSegment();
    const segment = this.active;
    if (!this.retention.track(record.key, record.version, segment)) return this.whenDurable();

    const group = (this.pending ??= this.newGroup());
    let chunk = group.chunks[group.chunks.length - 1];
    if (chunk === undefined || chunk.segment !== segment) {
      chunk = {
        segment,
        buf: this.spareBuffers.pop() ?? Buffer.allocUnsafe(INITIAL_CHUNK_BYTES),
        length: 0,
        lastSequence: 0,
      };
      group.chunks.push(chunk);
    }
    const room = maxEncodedBytes(record);
    if (chunk.length + room > chunk.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(chunk.buf.length * 2, chunk.length + room));
      chunk.buf.copy(bigger, 0, 0, chunk.length);
      chunk.buf = bigger;
    }
    const end = encodeRecord(record, chunk.buf, chunk.length);
    this.activeBytes += end - chunk.length;
    group.bytes += end - chunk.length;
    chunk.length = end;
    chunk.lastSequence = this.retention.lastSequence;
    this.kick();
    if (this.options.mode === 'wal-sync' || group.bytes > ASYNC_BUFFER_LIMIT) return groupDone(group);
    return RESOLVED;
  }

  /**
   * The flusher committed (or dead-lettered) `version` of `key`: records of `key` at or below it are no longer
   * needed. Sealed segments left with nothing needed are deleted in the background. Cheap and synchronous.
   */
  settle(key: string, version: number): void {
    if (this.closed) return;
    this.retention.settle(key, version);
  }

  stats(): WalStats {
    return {
      bytes: this.bytes,
      syncs: this.syncs,
      segments: this.segments.size,
      pendingRecords: this.retention.pending,
    };
  }

  /**
   * Writes and syncs everything buffered, closes the file and waits for segment deletions in progress.
   * Appends after this reject with `WriteBackClosedError`. Calling it again returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    // A failure reported earlier (to appends and the logger) does not fail close(); one while draining does.
    const earlierFailure = this.failure;
    this.closed = true;
    clearTimeout(this.syncTimer);
    if (this.failure === undefined) {
      this.syncDue = true;
      this.kick();
    }
    while (this.running) await this.loop;
    const file = this.file;
    this.file = undefined;
    try {
      if (file !== undefined && this.unsynced && this.failure === undefined) await this.sync(file);
    } finally {
      await file?.handle.close();
      await this.discardPreparedFile();
      await this.deletions;
      await this.unlock();
    }
    if (this.failure !== undefined && this.failure !== earlierFailure) throw this.failure;
  }

  private async replay(ids: number[]): Promise<WalRecord[]> {
    const { dir, corruption, logger } = this.options;
    const started = Date.now();
    const newest = new Map<string, WalRecord>();
    const replayed: WalSegment[] = [];
    let records = 0;
    for (let i = 0; i < ids.length; i++) {
      const segment = new WalSegment(ids[i]!, path.join(dir, segmentFileName(ids[i]!)));
      const buf = await readFile(segment.file);
      const scan = scanSegment(buf, { file: segment.file, last: i === ids.length - 1, corruption });
      for (const skip of scan.skipped) {
        logger.warn(
          `Skipped ${skip.bytes} damaged bytes of ${segment.file} at byte ${skip.offset} (${skip.reason}); ` +
            'records in them are lost (corruption: "skip").',
        );
      }
      if (scan.tornTail !== undefined) {
        const { offset, reason, droppedRecords } = scan.tornTail;
        logger.warn(
          `Torn record at byte ${offset} of ${segment.file} (${reason}): truncated ${buf.length - offset} bytes ` +
            `left by an interrupted write` +
            (droppedRecords > 0 ? `, with ${droppedRecords} unsynced records after it.` : '.'),
        );
        await truncateFile(segment.file, scan.keepBytes);
      }
      segment.bytes = scan.keepBytes;
      this.bytes += scan.keepBytes;
      this.segments.set(segment.id, segment);
      replayed.push(segment);
      for (const record of scan.records) {
        if (this.retention.trackReplayed(record.key, record.version, segment)) {
          // Re-inserting keeps `newest` in log order of each key's newest record.
          newest.delete(record.key);
          newest.set(record.key, record);
        }
      }
      records += scan.records.length;
    }
    for (const segment of replayed) this.retention.seal(segment);
    if (ids.length > 0) {
      logger.log(
        `Replayed ${records} records from ${ids.length} segments in ${Date.now() - started} ms: ` +
          `${newest.size} keys to flush.`,
      );
    }
    return [...newest.values()];
  }

  private async start(): Promise<void> {
    this.startSegment();
    this.file = await this.openSegmentFile(this.active);
    if (this.options.mode === 'wal-async') this.scheduleSync();
  }

  /** Makes a new segment the target of appends; the write loop creates its file when it gets there. */
  private startSegment(): void {
    const id = this.nextId++;
    this.active = new WalSegment(id, path.join(this.options.dir, segmentFileName(id)));
    this.activeBytes = 0;
    this.segments.set(id, this.active);
  }

  private newGroup(): Group {
    return { chunks: [], bytes: 0 };
  }

  /** Resolves once everything appended so far is durable (wal-sync) or at once (wal-async). */
  private whenDurable(): Promise<void> {
    if (this.options.mode === 'wal-async') return RESOLVED;
    const group = this.pending ?? this.inFlight;
    return group === undefined ? RESOLVED : groupDone(group);
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    const sync = this.options.mode === 'wal-sync';
    try {
      // Let the appends of the current tick join the first round.
      await yieldToEventLoop();
      while (this.failure === undefined && (this.pending !== undefined || this.syncDue)) {
        const group = this.pending;
        this.pending = undefined;
        this.inFlight = group;
        if (group !== undefined) await this.write(group);
        this.prepareNextSegmentEarly();
        if ((sync && group !== undefined) || this.syncDue) {
          this.syncDue = false;
          if (this.unsynced) await this.sync(this.file!);
        }
        this.inFlight = undefined;
        group?.resolve?.();
        if (sync && group !== undefined) {
          // The event loop ran all its phases while the fdatasync was in the thread pool, so nothing starves if the
          // next round starts now: one microtask lets the writers just acknowledged append again (they run first),
          // and what came in during the sync is written at once instead of after the next poll phase, whose I/O
          // callbacks (the flusher's) then run during the next sync.
          await null;
        } else {
          await yieldToEventLoop();
        }
      }
    } catch (error) {
      this.fail(error);
    } finally {
      this.running = false;
    }
  }

  private async write(group: Group): Promise<void> {
    // Only where a writer waits for this write (wal-sync); wal-async writes never hold up the event loop.
    const inline = this.options.mode === 'wal-sync';
    for (const chunk of group.chunks) {
      if (this.file?.segment !== chunk.segment) await this.switchFile(chunk.segment);
      const file = this.file!;
      let offset = 0;
      try {
        while (offset < chunk.length) {
          const length = chunk.length - offset;
          const bytesWritten =
            inline && length <= INLINE_WRITE_BYTES
              ? writeSync(file.handle.fd, chunk.buf, offset, length, file.position)
              : (await file.handle.write(chunk.buf, offset, length, file.position)).bytesWritten;
          // Internal: caught below and wrapped in WalIoError, the only error a caller sees.
          if (bytesWritten <= 0) throw new Error('the write made no progress');
          offset += bytesWritten;
          file.position += bytesWritten;
        }
      } catch (error) {
        throw new WalIoError(chunk.segment.file, 'write', error);
      } finally {
        this.unsynced ||= offset > 0;
        chunk.segment.bytes += offset;
        this.bytes += offset;
      }
      this.writtenSequence = chunk.lastSequence;
      if (chunk.buf.length <= MAX_SPARE_BYTES && this.spareBuffers.length < 4) this.spareBuffers.push(chunk.buf);
    }
  }

  private async sync(file: OpenFile): Promise<void> {
    try {
      await file.handle.datasync();
    } catch (error) {
      throw new WalIoError(file.segment.file, 'fdatasync', error);
    }
    this.syncs++;
    this.unsynced = false;
    this.retention.markDurable(this.writtenSequence);
  }

  /** Seals the open segment (synced, closed) and opens the file of `segment`. */
  private async switchFile(segment: WalSegment): Promise<void> {
    const previous = this.file;
    if (previous !== undefined) {
      if (this.unsynced) await this.sync(previous);
      this.file = undefined;
      try {
        await previous.handle.close();
      } catch (error) {
        throw new WalIoError(previous.segment.file, 'close', error);
      }
      this.retention.seal(previous.segment);
    }
    this.file = await this.openSegmentFile(segment);
  }

  /**
   * Gives `segment` its file: the zero-filled one prepared ahead (or one prepared now), moved to the segment's name.
   * Records then overwrite zeros instead of growing the file, so each fdatasync writes data blocks only (see
   * `createZeroFilledFile`); replay reads the zeros after the last record as the end of the segment.
   */
  private async openSegmentFile(segment: WalSegment): Promise<OpenFile> {
    const prepared = await (this.prepared ?? this.prepareSegmentFile());
    this.prepared = undefined;
    if ('error' in prepared) throw new WalIoError(segment.file, 'creation', prepared.error);
    try {
      // A segment file is never reused: an existing one means something else writes to this directory (the
      // directory lock keeps other logs out, so nothing can create it between this check and the rename).
      // Internal: caught below and wrapped in WalIoError.
      if (await exists(segment.file)) throw new Error('the segment file exists already');
      await rename(prepared.file, segment.file);
      await syncDirectory(this.options.dir);
    } catch (error) {
      await prepared.handle.close().catch(() => undefined);
      throw new WalIoError(segment.file, 'creation', error);
    }
    return { segment, handle: prepared.handle, position: 0 };
  }

  /** Starts zero-filling the next segment's file once the active one is half full, so rotation does not wait. */
  private prepareNextSegmentEarly(): void {
    if (this.prepared === undefined && this.file !== undefined && this.file.position >= this.options.segmentBytes / 2) {
      this.prepared = this.prepareSegmentFile();
    }
  }

  private prepareSegmentFile(): Promise<PreparedFile> {
    const file = path.join(this.options.dir, PREPARED_SEGMENT_FILE);
    return createZeroFilledFile(file, this.options.segmentBytes).then(
      (handle) => ({ file, handle }),
      (error: unknown) => ({ error }),
    );
  }

  /** At close: a prepared file is not a segment yet; removing it leaves nothing for the next start to clean. */
  private async discardPreparedFile(): Promise<void> {
    const prepared = await this.prepared;
    this.prepared = undefined;
    if (prepared === undefined || 'error' in prepared) return;
    await prepared.handle.close().catch(() => undefined);
    await rm(prepared.file, { force: true }).catch(() => undefined);
  }

  private scheduleSync(): void {
    this.syncTimer = setTimeout(() => {
      if (this.closed || this.failure !== undefined) return;
      if (this.unsynced || this.pending !== undefined) {
        this.syncDue = true;
        this.kick();
      }
      this.scheduleSync();
    }, this.options.syncIntervalMs);
    this.syncTimer.unref();
  }

  private fail(error: unknown): void {
    const failure =
      error instanceof WalIoError ? error : new WalIoError(this.file?.segment.file ?? this.options.dir, 'write', error);
    if (this.failure === undefined) {
      this.failure = failure;
      this.options.logger.error(failure.message);
    }
    for (const group of [this.inFlight, this.pending]) group?.reject?.(this.failure);
    this.inFlight = undefined;
    this.pending = undefined;
  }

  private deleteSegment(segment: WalSegment): void {
    this.segments.delete(segment.id);
    this.bytes -= segment.bytes;
    const { dir, logger } = this.options;
    this.deletions = this.deletions.then(async () => {
      try {
        await unlink(segment.file);
        await syncDirectory(dir);
      } catch (error) {
        logger.warn(`Could not delete flushed WAL segment ${segment.file}: ${errorMessage(error)}`);
      }
    });
  }
}

/** The promise the appends of `group` share. */
function groupDone(group: Group): Promise<void> {
  group.promise ??= new Promise<void>((resolve, reject) => {
    group.resolve = resolve;
    group.reject = reject;
  });
  return group.promise;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

async function truncateFile(file: string, bytes: number): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    await handle.truncate(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
