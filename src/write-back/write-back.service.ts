import {
  Logger,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { createHistogram, performance, type RecordableHistogram } from 'node:perf_hooks';
import type { DataSource, EntityTarget, ObjectLiteral } from 'typeorm';
import { entityKeyOfStored } from './model/entity-key.js';
import { EntityTable } from './entities/entity-table.js';
import { EntityWriter } from './entities/entity-writer.js';
import { PRIORITY_RANK } from './cache/dirty-set.js';
import { serializeValue, validateKey } from './cache/serialize.js';
import { incrementDelta, mergeDelta, parseDeltaText, type Delta } from './model/delta.js';
import type { WriteBackCache } from './cache/write-back-cache.js';
import { TombstoneSweeper } from './store/tombstone-sweeper.js';
import { WriteBackStore, type WriteBackDeadLetter } from './store/write-back.store.js';
import {
  WriteBackClosedError,
  WriteBackDeadLetterNotFoundError,
  WriteBackValidationError,
  WriteBackWriteThroughError,
} from './write-back.errors.js';
import type { ResolvedWriteBackOptions, WriteBackPriority } from './write-back.options.js';
import { errorCode } from './store/error-classifier.js';
import type { CircuitState, FlushError, FlushReport, FlushTimer } from './model/types.js';
import type { WalRecord, WriteAheadLog } from './wal/index.js';
import { HybridClock } from './cache/hybrid-clock.js';
import { RESOLVED, WritePipeline } from './write-pipeline.js';
import { InvalidationListener, type ListenerState } from './store/invalidation-listener.js';
import type { ReplicationStart } from './store/replication.js';

export interface WriteBackSetOptions {
  /** Flush order: `high` before `normal` before `low`; a `high` write starts a flush within `highPriorityDelayMs`. @default 'normal' */
  priority?: WriteBackPriority;
  /** Resolve only once Postgres committed the write (a single-row upsert now, instead of the next flush). @default false */
  writeThrough?: boolean;
}

export type WriteBackDeleteOptions = WriteBackSetOptions;

/** Counters (since start) and gauges (now). Cheap: no I/O. */
export interface WriteBackStats {
  writes: number;
  reads: number;
  hits: number;
  misses: number;
  loads: number;
  coalesced: number;
  flushes: number;
  flushedEntries: number;
  flushErrors: number;
  retries: number;
  deadLettered: number;
  /** Unflushed entries, in flight included. */
  dirty: number;
  /** Characters of the unflushed keys and values (what `maxDirtyBytes` bounds). */
  dirtyBytes: number;
  inFlight: number;
  /** Batch writes running now: 1 while the flusher keeps up, up to `flushConcurrency` while it is behind. */
  flushWorkers: number;
  queued: Record<WriteBackPriority, number>;
  cleanEntries: number;
  /** Characters of the clean keys and values (what `maxCleanBytes` bounds). */
  cleanBytes: number;
  /** Age of the oldest unflushed write, ms (0 when nothing is dirty). */
  flushLagMs: number;
  flushDurationMs: { count: number; mean: number; max: number };
  /** `set` latency in microseconds, sampled (one call in 8). */
  setLatencyUs: { count: number; p50: number; p99: number; max: number };
  circuit: CircuitState;
  lastFlushAt: string | null;
  lastError: { code: string | null; message: string; at: string } | null;
  /** Bytes of records in the write-ahead log's segment files (0 without a WAL). */
  walBytes: number;
  /**
   * Segment files of the write-ahead log, the active one included. Each is zero-filled to `walSegmentBytes`, so the
   * log takes about `(walSegments + 1) x walSegmentBytes` of disk (the next segment is prepared ahead).
   */
  walSegments: number;
  /** fdatasync calls of the write-ahead log since start. */
  walSyncs: number;
  /** The id in the low bits of this instance's versions. */
  instanceId: number;
  /** The invalidation listener: `off` with `singleInstance`; while not `listening`, reads bypass the clean cache. */
  listener: ListenerState;
  /** Clean copies dropped because another instance committed a newer version (or the listener reconnected). */
  invalidations: number;
  /** Pending writes dropped because another instance committed a newer version of their key before their flush. */
  superseded: number;
  /** Notifications of other instances' commits received, and the changes they named. */
  notifications: number;
  invalidatedChanges: number;
  /** Times the listen connection was lost. */
  listenerDisconnects: number;
  /** Another instance's commit (its clock at NOTIFY) to receipt here, ms: the last one and the p99 of the recent ones. */
  notifyLagMs: { last: number; p99: number };
}

const SET_LATENCY_SAMPLE_MASK = 7;

/**
 * The public API: a write-back cache over one Postgres table. Writes land in memory and return; a background
 * flusher batch-writes them. Created by `WriteBackModule`; inject it by class (or `@InjectWriteBack(name)`).
 */
export class WriteBackService implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger: Logger;
  private readonly pipeline: WritePipeline;
  /** The pipeline's cache, for reads. */
  private readonly cache: WriteBackCache;
  private readonly setLatency: RecordableHistogram = createHistogram();
  private setCalls = 0;
  private setLatencyObserver: ((seconds: number) => void) | undefined;
  private readonly sweeper: TombstoneSweeper;
  private shutdownDone: Promise<void> | undefined;
  private readonly listener: InvalidationListener | undefined;

  /** @internal Built by WriteBackModule: use the module, not this constructor. */
  constructor(
    readonly options: ResolvedWriteBackOptions,
    private readonly store: WriteBackStore,
    private readonly ownsDataSource: boolean,
    timer: FlushTimer,
    readonly instanceName = 'default',
    wal?: WriteAheadLog,
    recovered: readonly WalRecord[] = [],
    replication?: ReplicationStart,
  ) {
    this.logger = new Logger(instanceName === 'default' ? 'WriteBackService' : `WriteBackService:${instanceName}`);
    // The hybrid clock starts above every version committed before this start, and observes Postgres from here on.
    const clock = new HybridClock(replication?.instanceId ?? 0);
    clock.observe(replication?.highWater ?? 0);
    store.onObserved = (version) => clock.observe(version);
    this.pipeline = new WritePipeline(options, { sink: store, load: (key) => store.load(key), clock, timer, logger: this.logger, wal });
    this.cache = this.pipeline.cache;
    if (replication?.listen !== undefined) {
      this.listener = new InvalidationListener(replication.listen, replication.channel, replication.origin, this.cache, this.logger, {
        retryBaseDelayMs: options.retryBaseDelayMs,
        retryMaxDelayMs: Math.min(options.retryMaxDelayMs, 5000),
        heartbeatMs: options.listenHeartbeatMs,
      });
    }
    // Recovery happens here, before the module hands the service to anyone: replayed writes are dirty again
    // at their logged versions and flush as usual (the version guard makes a second flush harmless).
    this.pipeline.recover(recovered);
    if (recovered.length > 0) {
      this.logger.log(`Replayed ${recovered.length} entries from the write-ahead log in ${options.walDir}`);
    }
    this.sweeper = new TombstoneSweeper(
      store.dataSource,
      store.schema,
      {
        retentionMs: options.tombstoneRetentionMs,
        intervalMs: options.tombstoneSweepIntervalMs,
        ledgerRetentionMs: options.deltaLedgerRetentionMs,
      },
      this.logger,
    );
  }

  /**
   * Starts the flush timer (with `autoFlush`) once the whole application is built, never in the constructor: the
   * app's `SchedulerRegistry` exists by then, and an app that fails to start leaves no timer behind. The tombstone
   * sweeper runs with the flush timer: `autoFlush: false` (tests) runs no background work at all.
   */
  onApplicationBootstrap(): void {
    if (this.pipeline.isClosing) return;
    this.pipeline.start();
    if (this.options.autoFlush) this.sweeper.start();
  }

  /**
   * @internal Called by the module before it hands the service out: the first LISTEN is in place (or has failed
   * and is retried in the background, reads bypassing the clean cache meanwhile).
   */
  async startListening(): Promise<void> {
    await this.listener?.start();
  }

  /** The DataSource the module writes through. */
  get dataSource(): DataSource {
    return this.store.dataSource;
  }

  /**
   * Memory first (dirty or clean); on a miss, loads from Postgres (concurrent misses of one key share one
   * query) and caches the row clean. A pending delete reads as undefined. Each call returns a fresh copy.
   */
  async get<T = unknown>(key: string): Promise<T | undefined> {
    validateKey(key, this.options.maxKeyLength);
    const json = await this.cache.get(key);
    return json === undefined ? undefined : (JSON.parse(json) as T);
  }

  /**
   * Accepts a write: the value is serialized (and so snapshotted and validated) now. Resolves once the write is
   * held in memory, or with `writeThrough` once Postgres committed it. Bad input throws a
   * `WriteBackValidationError` and changes nothing; a full cache waits or throws `WriteBackOverloadedError`.
   */
  set<T = unknown>(key: string, value: T, options?: WriteBackSetOptions): Promise<void> {
    const sampled = (this.setCalls++ & SET_LATENCY_SAMPLE_MASK) === 0;
    const started = sampled ? performance.now() : 0;
    let accepted: Promise<void>;
    try {
      this.assertOpen('set');
      validateKey(key, this.options.maxKeyLength);
      const rank = rankOf(options);
      const json = serializeValue(key, value, this.options.maxValueBytes);
      accepted = this.pipeline.accept(key, json, rank, options?.writeThrough === true);
    } catch (error) {
      return Promise.reject(error);
    }
    if (!sampled) return accepted;
    if (accepted === RESOLVED) {
      this.recordSetLatency(started);
    } else {
      // On a side chain: the caller gets `accepted` itself, so a sampled call resumes in the same microtask as the
      // others (with wal-sync it then joins the same next group commit instead of the one after).
      accepted.then(() => this.recordSetLatency(started), ignoreRejection);
    }
    return accepted;
  }

  /**
   * Adds to a counter without reading it: `by` is an integer (the value is a JSON number; an absent key counts from
   * 0) or an object of integers (each adds to that field of the stored object; a missing field counts from 0).
   * Increments of one key coalesce into one pending delta, and Postgres applies it to whatever the row holds then,
   * exactly once, so increments from every replica add up. After a `set` of the key on this instance, the
   * increment applies to that value in memory. Resolves like `set`.
   */
  increment(key: string, by: number | Record<string, number>, options?: WriteBackSetOptions): Promise<void> {
    try {
      this.assertOpen('increment');
      validateKey(key, this.options.maxKeyLength);
      return this.pipeline.acceptDelta(key, incrementDelta(key, by), rankOf(options), options?.writeThrough === true);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Changes some fields of a stored object without reading it: a JSON Merge Patch (RFC 7396; nested objects
   * merge, `null` removes a member). Merges of different fields from several replicas all survive; for the same
   * field the later version wins. Resolves like `set`.
   */
  merge(key: string, patch: Record<string, unknown>, options?: WriteBackSetOptions): Promise<void> {
    try {
      this.assertOpen('merge');
      validateKey(key, this.options.maxKeyLength);
      // Serialized once like a value: validated, and a snapshot the caller's object cannot change.
      const json = serializeValue(key, patch, this.options.maxValueBytes);
      return this.pipeline.acceptDelta(key, mergeDelta(key, JSON.parse(json)), rankOf(options), options?.writeThrough === true);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Deletes `key`: a versioned tombstone, flushed like a write (a guarded DELETE). */
  delete(key: string, options?: WriteBackDeleteOptions): Promise<void> {
    try {
      this.assertOpen('delete');
      validateKey(key, this.options.maxKeyLength);
      return this.pipeline.accept(key, null, rankOf(options), options?.writeThrough === true);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Persists everything dirty now. Resolves when each entry is committed or dead-lettered; transient failures
   * are retried (with backoff) until then, or until `timeoutMs` (then `WriteBackFlushTimeoutError`; the entries
   * stay queued).
   */
  async flush(options: { timeoutMs?: number } = {}): Promise<FlushReport> {
    return this.pipeline.flush(options);
  }

  stats(): WriteBackStats {
    const cache = this.cache.counters;
    const flush = this.pipeline.status.counters;
    const oldest = this.cache.dirty.oldestSince();
    const lastError: FlushError | undefined = this.pipeline.status.lastError;
    const latency = this.setLatency;
    const wal = this.pipeline.walStats();
    const listener = this.listener?.stats();
    return {
      ...cache,
      flushes: flush.flushes,
      flushedEntries: flush.flushedEntries,
      flushErrors: flush.flushErrors,
      retries: flush.retries,
      deadLettered: flush.deadLettered,
      dirty: this.cache.dirty.size,
      dirtyBytes: this.cache.dirty.bytes,
      inFlight: this.cache.dirty.inFlightCount,
      flushWorkers: this.pipeline.status.workers,
      queued: this.cache.dirty.queuedByPriority(),
      cleanEntries: this.cache.clean.size,
      cleanBytes: this.cache.clean.bytes,
      flushLagMs: oldest === undefined ? 0 : Math.max(0, Date.now() - oldest),
      flushDurationMs: {
        count: flush.flushes,
        mean: flush.flushes === 0 ? 0 : flush.flushDurationMsTotal / flush.flushes,
        max: flush.flushDurationMsMax,
      },
      setLatencyUs: {
        count: latency.count,
        p50: latency.count === 0 ? 0 : latency.percentile(50),
        p99: latency.count === 0 ? 0 : latency.percentile(99),
        max: latency.count === 0 ? 0 : latency.max,
      },
      circuit: this.pipeline.status.circuitState(),
      lastFlushAt: this.pipeline.status.lastFlushAt?.toISOString() ?? null,
      lastError: lastError ? { code: lastError.code ?? null, message: lastError.message, at: lastError.at.toISOString() } : null,
      walBytes: wal?.bytes ?? 0,
      walSegments: wal?.segments ?? 0,
      walSyncs: wal?.syncs ?? 0,
      instanceId: this.cache.clock.instanceId,
      listener: listener?.state ?? 'off',
      invalidations: cache.invalidations,
      superseded: cache.superseded,
      notifications: listener?.notifications ?? 0,
      invalidatedChanges: listener?.changes ?? 0,
      listenerDisconnects: listener?.disconnects ?? 0,
      notifyLagMs: listener?.lagMs ?? { last: 0, p99: 0 },
    };
  }

  /**
   * @internal Hooks for the Prometheus histograms: sampled `set` latency and committed batch durations, in seconds.
   */
  observe(observer: { setLatency(seconds: number): void; flushDuration(seconds: number): void }): void {
    this.setLatencyObserver = (seconds) => observer.setLatency(seconds);
    this.pipeline.onBatchCommitted((ms) => observer.flushDuration(ms / 1000));
  }

  /** True from the start of the graceful shutdown drain: no more writes are accepted (readiness reports down). */
  get isShuttingDown(): boolean {
    return this.pipeline.isClosing;
  }

  /** When the flush timer last ticked (ms since epoch), and whether it runs: for the liveness probe. */
  flushLoopStatus(): { running: boolean; lastTickAt: number } {
    return { running: this.pipeline.status.isTimerRunning, lastTickAt: this.pipeline.status.lastTickAt };
  }

  /** Dead letters, oldest first; page with `afterId`. */
  async listDeadLetters(options: { limit?: number; afterId?: string; key?: string } = {}): Promise<WriteBackDeadLetter[]> {
    // Checked here, not by Postgres: a NUL or an out-of-range id would otherwise be an SQL error, not bad input.
    if (options.key !== undefined) validateKey(options.key, this.options.maxKeyLength);
    if (options.afterId !== undefined) validateDeadLetterId(options.afterId, 'afterId');
    if (options.limit !== undefined && (!Number.isSafeInteger(options.limit) || options.limit < 1 || options.limit > MAX_DEAD_LETTER_PAGE)) {
      throw new WriteBackValidationError(`Option "limit" must be an integer from 1 to ${MAX_DEAD_LETTER_PAGE}, got ${String(options.limit)}.`);
    }
    return this.store.listDeadLetters(options);
  }

  countDeadLetters(): Promise<number> {
    return this.store.countDeadLetters();
  }

  /**
   * Writes a dead letter again, at its original version, and removes it from the table once Postgres has
   * taken it (committed, or rejected again into a new dead letter). It is `superseded` (and not written) when a
   * newer write of the key is held in memory or already in Postgres, including a later delete (its tombstone). If Postgres is unreachable the write stays queued, the
   * dead letter stays in the table, and this rejects with `WriteBackWriteThroughError`.
   */
  async replayDeadLetter(id: string): Promise<{ requeued: boolean; outcome: 'committed' | 'dead-lettered' | 'superseded' }> {
    this.assertOpen('replayDeadLetter');
    validateDeadLetterId(id, 'id');
    const letter = await this.store.getDeadLetter(id);
    if (letter === undefined) throw new WriteBackDeadLetterNotFoundError(id);
    if (letter.operation === 'delta') return this.replayDeltaDeadLetter(id, letter);
    const json = letter.operation === 'delete' ? null : JSON.stringify(letter.value);
    const key = keyOfDeadLetter(letter);
    let outcome: 'committed' | 'dead-lettered' | 'superseded' = 'superseded';
    const result = await this.pipeline.replay(key, json, letter.version, PRIORITY_RANK.normal);
    if (result !== undefined) {
      if (result.outcome === 'queued') {
        throw new WriteBackWriteThroughError(letter.key, errorCode(result.error), result.error, true);
      }
      outcome = result.outcome === 'deadLettered' ? 'dead-lettered' : result.outcome;
    }
    await this.store.deleteDeadLetter(id);
    this.logger.log(`Dead letter ${id} (key "${letter.key}") replayed: ${outcome}`);
    return { requeued: outcome !== 'superseded', outcome };
  }

  /**
   * A delta is written straight to Postgres under a ledger entry of the dead letter's own (`dead-letter:<id>`), so
   * replaying it twice (a crash before the dead letter was removed) applies it once. It does not pass through
   * memory: deltas pending here apply on top of it, in any order.
   */
  private async replayDeltaDeadLetter(
    id: string,
    letter: WriteBackDeadLetter,
  ): Promise<{ requeued: boolean; outcome: 'committed' | 'dead-lettered' | 'superseded' }> {
    const item = {
      key: keyOfDeadLetter(letter),
      json: null,
      version: letter.version,
      rank: PRIORITY_RANK.normal,
      delta: parseDeltaText(JSON.stringify(letter.value)),
      origin: `dead-letter:${id}`,
    };
    try {
      await this.pipeline.writeOutsideQueue(item);
    } catch (error) {
      throw new WriteBackWriteThroughError(letter.key, errorCode(error), error, false);
    }
    await this.store.deleteDeadLetter(id);
    this.logger.log(`Dead letter ${id} (delta of key "${letter.key}") replayed: committed`);
    return { requeued: true, outcome: 'committed' };
  }

  /**
   * Deletes tombstones older than `tombstoneRetentionMs` now (the module also does so every
   * `tombstoneSweepIntervalMs` while `autoFlush` runs). Resolves with the number deleted: 0 when retention is 0 or
   * another replica is sweeping.
   */
  sweepTombstones(): Promise<number> {
    return this.sweeper.sweep();
  }

  /**
   * @internal For `WriteBackRepository`: registers `target` (checked against the DataSource's metadata) and returns
   * its table.
   */
  registerEntity<T extends ObjectLiteral>(target: EntityTarget<T>, versionColumn?: string): EntityTable<T> {
    const table = EntityTable.of(this.store.dataSource, target, this.instanceName, versionColumn);
    this.store.registerEntity(new EntityWriter(table, this.store.ledgerTable));
    return table;
  }

  /** @internal A whole row (`json`) or a delete (`null`) of an entity key. */
  writeEntityRow(key: string, json: string | null, options?: WriteBackSetOptions): Promise<void> {
    try {
      this.assertOpen(json === null ? 'delete' : 'save');
      return this.pipeline.accept(key, json, rankOf(options), options?.writeThrough === true);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** @internal A flat delta (columns set, increments) of an entity key. */
  writeEntityDelta(key: string, delta: Delta, options?: WriteBackSetOptions): Promise<void> {
    try {
      this.assertOpen(delta.set === undefined ? 'increment' : 'update');
      if (this.incrementsUnknownColumn(key, delta)) return this.writeEntityDeltaAfterSave(key, delta, options);
      return this.pipeline.acceptDelta(key, delta, rankOf(options), options?.writeThrough === true);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * A pending save that leaves a column out (the row keeps its value, or gets the default) cannot take an
   * increment of that column in memory: the value is known only once the save is in Postgres. So the save is
   * written now, and the increment then applies to the row like any other.
   */
  private async writeEntityDeltaAfterSave(key: string, delta: Delta, options?: WriteBackSetOptions): Promise<void> {
    while (this.incrementsUnknownColumn(key, delta)) {
      const result = await this.pipeline.writeThrough(key);
      if (result.outcome === 'queued') throw new WriteBackWriteThroughError(key, errorCode(result.error), result.error, true);
    }
    return this.pipeline.acceptDelta(key, delta, rankOf(options), options?.writeThrough === true);
  }

  private incrementsUnknownColumn(key: string, delta: Delta): boolean {
    if (delta.inc === undefined) return false;
    const dirty = this.cache.dirty.get(key);
    if (dirty === undefined || dirty.relative || dirty.json === null) return false;
    const row = JSON.parse(dirty.json) as Record<string, unknown>;
    return Object.keys(delta.inc).some((column) => !Object.hasOwn(row, column));
  }

  /** @internal The JSON text of an entity key's row: memory first, then one load shared by concurrent misses. */
  readEntityRow(key: string): Promise<string | undefined> {
    return this.cache.get(key);
  }

  /** Deletes a dead letter for good. */
  async discardDeadLetter(id: string): Promise<void> {
    validateDeadLetterId(id, 'id');
    if (!(await this.store.deleteDeadLetter(id))) throw new WriteBackDeadLetterNotFoundError(id);
    this.logger.log(`Dead letter ${id} discarded`);
  }

  /** Stops accepting writes, stops the timer and drains within `shutdownTimeoutMs`. */
  async beforeApplicationShutdown(): Promise<void> {
    this.shutdownDone ??= this.drain();
    return this.shutdownDone;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.beforeApplicationShutdown();
    await this.listener?.close();
    if (this.ownsDataSource && this.store.dataSource.isInitialized) {
      this.store.abandonConnections();
      await this.store.dataSource.destroy();
    }
  }

  private async drain(): Promise<void> {
    this.pipeline.beginShutdown();
    await this.sweeper.stop();
    const dirty = this.cache.dirty.size;
    const started = Date.now();
    const left = await this.pipeline.drain(this.options.shutdownTimeoutMs);
    const elapsed = Date.now() - started;
    // A batch still in the air when the drain gave up would keep the DataSource from closing until it timed out.
    if (left > 0) this.store.abandonConnections();
    // Nothing is written after the drain: the listen connection goes now, before any database (an embedded one, the
    // app's) closes in a later hook and the listener would take that for an outage.
    await this.listener?.close();
    if (left === 0) {
      this.logger.log(`Shutdown drain flushed ${dirty} entries in ${elapsed} ms`);
    } else if (this.pipeline.hasWal) {
      this.logger.warn(
        `Shutdown drain flushed ${dirty - left} of ${dirty} entries within shutdownTimeoutMs=${this.options.shutdownTimeoutMs}; ` +
          `the other ${left} stay in the write-ahead log (${this.options.walDir}) and are replayed at the next start`,
      );
    } else {
      this.logger.error(
        `Shutdown drain could not flush ${left} of ${dirty} entries within shutdownTimeoutMs=${this.options.shutdownTimeoutMs}; ` +
          `they are lost (durability "none"). Last error: ${this.pipeline.status.lastError?.message ?? 'none'}`,
      );
    }
  }

  private assertOpen(operation: string): void {
    if (this.pipeline.isClosing) throw new WriteBackClosedError(operation);
  }

  private recordSetLatency(started: number): void {
    const elapsedMs = performance.now() - started;
    this.setLatency.record(Math.max(1, Math.round(elapsedMs * 1000)));
    this.setLatencyObserver?.(elapsedMs / 1000);
  }
}

const MAX_DEAD_LETTER_PAGE = 10_000;
const MAX_BIGINT = 9_223_372_036_854_775_807n;

/** A dead-letter id is a positive Postgres bigint, as a string of digits. */
function validateDeadLetterId(id: unknown, name: string): void {
  if (typeof id !== 'string' || !/^\d{1,19}$/.test(id) || BigInt(id) < 1n || BigInt(id) > MAX_BIGINT) {
    throw new WriteBackValidationError(`Dead-letter ${name} must be a positive integer (as a string), got ${JSON.stringify(String(id)).slice(0, 60)}.`);
  }
}

/** The dirty-set key a dead letter was written from. */
function keyOfDeadLetter(letter: WriteBackDeadLetter): string {
  return letter.entity ? entityKeyOfStored(letter.entity, letter.key) : letter.key;
}

/** The caller handles the rejection; the latency side chain must not report it again as unhandled. */
function ignoreRejection(): void {}

function rankOf(options: WriteBackSetOptions | undefined): number {
  if (options === undefined) return PRIORITY_RANK.normal;
  if (options === null || typeof options !== 'object') {
    throw new WriteBackValidationError('Write options must be an object like { priority: "high" }.');
  }
  if (options.writeThrough !== undefined && typeof options.writeThrough !== 'boolean') {
    throw new WriteBackValidationError('Option "writeThrough" must be true or false.');
  }
  if (options.priority === undefined) return PRIORITY_RANK.normal;
  const rank = PRIORITY_RANK[options.priority];
  if (rank === undefined || !Object.hasOwn(PRIORITY_RANK, options.priority)) {
    throw new WriteBackValidationError(`Option "priority" must be "high", "normal" or "low", got ${JSON.stringify(options.priority)}.`);
  }
  return rank;
}
