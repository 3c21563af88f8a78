import { deltaSize, type Delta } from './model/delta.js';
import { DirtySet } from './cache/dirty-set.js';
import type { HybridClock } from './cache/hybrid-clock.js';
import { serializeValue } from './cache/serialize.js';
import { parseWalDeltaState, walDeltaState } from './cache/wal-delta-state.js';
import { WriteBackCache } from './cache/write-back-cache.js';
import { DirtySetQueue } from './flush/flush-queue.js';
import { Flusher, type FlusherOptions } from './flush/flusher.js';
import type { WriteThroughResult } from './flush/write-through.js';
import type {
  FlushCompletion,
  FlusherLogger,
  FlushItem,
  FlushOutcome,
  FlushReport,
  FlushSink,
  FlushStatus,
  FlushTimer,
  StoredRow,
} from './model/types.js';
import { errorCode } from './store/error-classifier.js';
import type { WalRecord, WalStats, WriteAheadLog } from './wal/index.js';
import { WriteBackClosedError, WriteBackOverloadedError, WriteBackWriteThroughError } from './write-back.errors.js';

/** What a write accepted on the fast path returns: one shared promise, no async frame per write. */
export const RESOLVED: Promise<void> = Promise.resolve();

export interface WritePipelineOptions extends FlusherOptions {
  maxEntries: number;
  maxDirtyBytes: number;
  maxCleanBytes: number;
  maxValueBytes: number;
  backpressure: 'block' | 'reject';
  backpressureTimeoutMs: number;
}

/** What the pipeline is built on. The store is the sink and the loader; tests pass their own. */
export interface WritePipelineParts {
  sink: FlushSink;
  load(key: string): Promise<StoredRow | undefined>;
  clock: HybridClock;
  timer: FlushTimer;
  logger: FlusherLogger;
  wal?: WriteAheadLog;
  random?: () => number;
}

/**
 * The write path, and its only owner: the dirty set (in the cache), the write-ahead log and the flusher. A write
 * is recorded in memory, logged in the same synchronous step, then the flusher is told; the flusher reaches the
 * dirty entries only through the narrow FlushQueue port this builds, and reports each item that left the
 * in-flight state, which this turns into the cache's and the log's bookkeeping, then into completion events.
 */
export class WritePipeline {
  /** The in-memory state: reads, invalidations and stats go through it; writes go through this pipeline. */
  readonly cache: WriteBackCache;
  /** Counters and state of the flusher (read only). */
  readonly status: FlushStatus;
  private readonly flusher: Flusher;
  private readonly wal: WriteAheadLog | undefined;
  private readonly completionListeners: ((completion: FlushCompletion) => void)[] = [];
  private closing = false;

  constructor(
    private readonly options: WritePipelineOptions,
    private readonly parts: WritePipelineParts,
  ) {
    const dirty = new DirtySet();
    this.cache = new WriteBackCache(
      options.maxEntries,
      options.maxDirtyEntries,
      (key) => parts.load(key),
      Date.now,
      options.maxDirtyBytes,
      options.maxCleanBytes,
      parts.clock,
      dirty,
    );
    this.wal = parts.wal;
    const wal = this.wal;
    // A pending write another instance superseded leaves memory without a flush: the log may forget it too.
    if (wal) this.cache.onSuperseded = (item) => wal.settle(item.key, item.version);
    const queue = new DirtySetQueue(dirty, (item, outcome, clean, superseded) =>
      this.completed(item, outcome, clean, superseded),
    );
    this.flusher = new Flusher(queue, parts.sink, options, parts.timer, parts.logger, Date.now, parts.random);
    this.status = this.flusher;
  }

  /**
   * Takes an accepted (validated) write. The common case, room and no WAL or `wal-async`, is synchronous and
   * returns the shared RESOLVED promise: no async frame per write on the hot path.
   */
  accept(key: string, json: string | null, rank: number, writeThrough: boolean): Promise<void> {
    if (!writeThrough && this.cache.hasRoomFor(key, json === null ? 0 : json.length)) {
      // A caller awaiting set() in a tight loop never lets the event loop turn on a resolved promise (nor on
      // wal-async's, resolved at once), so the flush timer could not fire until the dirty set was full. Once a flush
      // is due, this write resolves after one turn of the event loop, in which the due flush starts.
      return this.afterWrite(this.write(key, json, rank));
    }
    return this.acceptSlowly(key, json, rank, writeThrough);
  }

  /** Applies a write to memory (and the WAL); returns the WAL's promise when there is one to wait for. */
  private write(key: string, json: string | null, rank: number): Promise<void> | undefined {
    const version = this.cache.write(key, json, rank);
    // Logged in the same tick as the write, before the flusher can take it: its settle() always follows.
    const durable = this.wal?.append({ key, json, version, rank });
    this.flusher.notifyWrite(rank);
    return durable;
  }

  /** What a write accepted on the fast path returns: the WAL's promise, then one yield if a flush is due. */
  private afterWrite(durable: Promise<void> | undefined): Promise<void> {
    if (!this.flusher.isFlushDue(this.cache.lastWriteAt)) return durable ?? RESOLVED;
    return durable === undefined ? this.yieldToFlusher() : durable.then(() => this.yieldToFlusher());
  }

  /** Resolves after one turn of the event loop (I/O included: setImmediate runs after the poll phase), starting the due flush. */
  private yieldToFlusher(): Promise<void> {
    return new Promise((resolve) =>
      setImmediate(() => {
        this.flusher.tickIfDue();
        resolve();
      }),
    );
  }

  acceptDelta(key: string, delta: Delta, rank: number, writeThrough: boolean): Promise<void> {
    const chars = deltaSize(delta);
    if (!writeThrough && this.cache.hasRoomFor(key, chars)) {
      // As for set: a tight loop of increments must let the flusher run once a flush is due.
      return this.afterWrite(this.writeDelta(key, delta, rank, chars));
    }
    return this.acceptSlowly(key, delta, rank, writeThrough);
  }

  /**
   * Applies a delta to memory (and the WAL). What the log gets is the key's whole state after it: a value when the
   * delta applied to one, else every delta not yet committed (the one in flight, with its version, and the pending
   * ones), so the newest record of a key is all a replay needs.
   */
  private writeDelta(key: string, delta: Delta, rank: number, chars: number): Promise<void> | undefined {
    const version = this.cache.writeDelta(
      key,
      delta,
      rank,
      (value) => serializeValue(key, value, this.options.maxValueBytes),
      chars,
    );
    let durable: Promise<void> | undefined;
    if (this.wal !== undefined) {
      const entry = this.cache.dirty.get(key)!;
      durable = entry.relative
        ? this.wal.append({ key, json: walDeltaState(entry), version, rank, delta: true })
        : this.wal.append({ key, json: entry.json, version, rank });
    }
    this.flusher.notifyWrite(rank);
    return durable;
  }

  private async acceptSlowly(key: string, change: string | null | Delta, rank: number, writeThrough: boolean): Promise<void> {
    // The last room check and the write happen in one synchronous step: writers woken together by one freed
    // slot each check again right here, so only one of them takes it (dirty never exceeds maxDirtyEntries).
    let deadline: number | undefined;
    const chars = change === null ? 0 : typeof change === 'string' ? change.length : deltaSize(change);
    while (!this.cache.hasRoomFor(key, chars)) {
      deadline ??= Date.now() + this.options.backpressureTimeoutMs;
      await this.waitForRoom(key, chars, deadline);
    }
    const durable =
      change === null || typeof change === 'string' ? this.write(key, change, rank) : this.writeDelta(key, change, rank, chars);
    if (durable !== undefined) await durable;
    if (writeThrough) {
      const result = await this.flusher.flushKey(key);
      if (result.outcome === 'queued' || result.outcome === 'deadLettered') {
        throw new WriteBackWriteThroughError(key, errorCode(result.error), result.error, result.outcome === 'queued');
      }
    }
  }

  /** Waits until `key` has room or throws; the caller checks again before writing (see accept). */
  private async waitForRoom(key: string, chars: number, deadline: number): Promise<void> {
    const { backpressure, backpressureTimeoutMs } = this.options;
    if (backpressure === 'reject') throw this.overloaded(key, 'reject');
    while (!this.cache.hasRoomFor(key, chars)) {
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.cache.waitForRoom(left))) {
        if (this.cache.hasRoomFor(key, chars)) return;
        throw this.overloaded(key, 'block', backpressureTimeoutMs);
      }
      if (this.closing) throw new WriteBackClosedError('set');
    }
  }

  /** The error for a write `key` that found no room, naming the bound that was reached. */
  private overloaded(key: string, mode: 'block' | 'reject', waitedMs?: number): WriteBackOverloadedError {
    const bound = this.cache.fullBound(key);
    const dirty = bound === 'maxDirtyEntries' ? this.cache.dirty.size : this.cache.dirty.bytes;
    return new WriteBackOverloadedError(dirty, this.options[bound], mode, waitedMs, bound);
  }

  /** Writes `key` now, outside the flush order, and resolves with how it ended (see Flusher.flushKey). */
  writeThrough(key: string): Promise<WriteThroughResult> {
    return this.flusher.flushKey(key);
  }

  /**
   * Queues a write again at its original version (a dead-letter replay) and writes it now; undefined, with nothing
   * written, when memory already holds a newer version of the key.
   */
  async replay(key: string, json: string | null, version: number, rank: number): Promise<WriteThroughResult | undefined> {
    if (!this.cache.requeue(key, json, version, rank)) return undefined;
    await this.wal?.append({ key, json, version, rank });
    return this.flusher.flushKey(key);
  }

  /** Writes a delta straight to Postgres, past memory and the log (a dead letter's delta under its own ledger entry). */
  async writeOutsideQueue(item: FlushItem): Promise<void> {
    await this.parts.sink.writeBatch([item]);
    this.cache.onCommitted(item, false);
  }

  /** Replays the write-ahead log's records: dirty again at their logged versions, they flush as usual. */
  recover(records: readonly WalRecord[]): void {
    for (const record of records) {
      if (record.delta === true) {
        const state = parseWalDeltaState(record.json!);
        this.cache.requeueDelta(record.key, state.flight, state.pending, record.version, record.rank, record.json!.length);
      } else {
        this.cache.requeue(record.key, record.json, record.version, record.rank);
      }
    }
  }

  /** The flusher reported `item` done: the dirty set, the cache and the log learn it, then the listeners. */
  private completed(item: FlushItem, outcome: FlushOutcome, clean: boolean, superseded: boolean): void {
    if (outcome === 'committed') this.cache.onCommitted(item, clean, superseded);
    else this.cache.onDeadLettered(item, clean);
    // The log may drop a record once the version it holds (or a newer one) is committed or dead-lettered.
    this.wal?.settle(item.key, item.version);
    for (const listener of this.completionListeners) listener({ item, outcome, clean, superseded });
  }

  /** Told about every item that left the in-flight state for good (committed or dead-lettered). */
  onCompleted(listener: (completion: FlushCompletion) => void): void {
    this.completionListeners.push(listener);
  }

  /** Told the duration (ms) and rows of every committed batch. */
  onBatchCommitted(listener: (durationMs: number, rows: number) => void): void {
    this.flusher.onBatchCommitted = listener;
  }

  /** See Flusher.flush. */
  flush(options: { timeoutMs?: number } = {}): Promise<FlushReport> {
    return this.flusher.flush(options);
  }

  /** Starts the flush timer (with `autoFlush`). */
  start(): void {
    this.flusher.start();
  }

  /** Stops the flush timer; rounds in progress finish. */
  stop(): void {
    this.flusher.stopTimer();
  }

  /** From the start of the shutdown drain: writes are refused, a write waiting for room gives up. */
  get isClosing(): boolean {
    return this.closing;
  }

  beginShutdown(): void {
    this.closing = true;
  }

  /**
   * Graceful shutdown: stops the timer, flushes for at most `timeoutMs`, then closes the write-ahead log. Returns how
   * many entries are still dirty.
   */
  async drain(timeoutMs: number): Promise<number> {
    this.closing = true;
    const left = await this.flusher.drain(timeoutMs);
    if (this.wal !== undefined) await this.wal.close();
    return left;
  }

  /** Whether writes are logged (durability `wal-async` or `wal-sync`). */
  get hasWal(): boolean {
    return this.wal !== undefined;
  }

  /** The write-ahead log's counters, or undefined without one. */
  walStats(): WalStats | undefined {
    return this.wal?.stats();
  }
}
