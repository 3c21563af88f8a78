import type { DirtySet, FlushItem } from '../cache/dirty-set.js';
import type { DeadLetterFailure } from '../store/write-back.store.js';
import { WriteBackClosedError, WriteBackFlushStalledError, WriteBackFlushTimeoutError, errorMessage, truncate } from '../write-back.errors.js';
import { CircuitBreaker, type CircuitState } from './circuit-breaker.js';
import { classifyError, errorCode, isLostConnection } from './error-classifier.js';
import { withTimeout } from '../with-timeout.js';
import { isEntityKey, storedEntityKey } from '../cache/entity-key.js';

/** Where the flusher writes. Implemented by WriteBackStore; tests may pass their own. */
export interface FlushSink {
  /** Resolves with the keys the version guard skipped (Postgres holds a newer version), if it reports them. */
  writeBatch(items: readonly FlushItem[]): Promise<readonly string[] | void>;
  insertDeadLetter(item: FlushItem, failure: DeadLetterFailure): Promise<void>;
}

/** One timer slot the flusher re-arms itself (wired to SchedulerRegistry by the module). */
export interface FlushTimer {
  set(callback: () => void, delayMs: number): void;
  clear(): void;
}

export interface FlusherLogger {
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface FlusherOptions {
  autoFlush: boolean;
  flushIntervalMs: number;
  highPriorityDelayMs: number;
  batchSize: number;
  flushConcurrency: number;
  /** Beyond one batch at a time, more (up to flushConcurrency) run only once the next queued write waited this long. */
  flushScaleUpLagMs: number;
  /** ... or once the dirty set holds half of this (which also stops holding hot keys). */
  maxDirtyEntries: number;
  /** Hold keys re-written after being taken in this interval until the next interval tick (DirtySet holding). */
  coalesceHotKeys: boolean;
  maxRetries: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
  circuitBreakerThreshold: number;
}

/** Told about every entry that leaves the in-flight state for good. */
export interface FlushListener {
  /**
   * `item` is in Postgres; `clean` says whether it was still the key's latest version. `superseded`: the statement
   * committed but the version guard skipped the row, as Postgres already held a newer version of the key.
   */
  onCommitted(item: FlushItem, clean: boolean, superseded: boolean): void;
  /** `item` went to the dead-letter table; `clean` as above. */
  onDeadLettered(item: FlushItem, clean: boolean): void;
}

export interface FlushReport {
  /** Entries that were dirty when flush() was called. */
  requested: number;
  /** Of those, committed (at their version or a newer one). */
  committed: number;
  /** Of those, moved to the dead-letter table. */
  deadLettered: number;
  durationMs: number;
}

export interface FlushCounters {
  flushes: number;
  flushedEntries: number;
  flushErrors: number;
  retries: number;
  deadLettered: number;
  flushDurationMsTotal: number;
  flushDurationMsMax: number;
}

export interface FlushError {
  code: string | undefined;
  message: string;
  at: Date;
}

interface Waiter {
  remaining: Map<string, number>;
  committed: number;
  deadLettered: number;
  superseded: number;
  cancelled: boolean;
}

type Outcome = 'committed' | 'deadLettered';

/** A batch is one jsonb parameter, and jsonb values stop near 256 MB: keep well below, whatever batchSize says. */
const MAX_BATCH_CHARS = 32 * 1024 * 1024;

/**
 * Moves dirty entries to Postgres in batches: a self-rescheduling timer ticks every `flushIntervalMs` (earlier
 * when `batchSize` entries are queued or a `high` write arrives) and starts a round unless one is running; a
 * round runs workers that take batches until nothing is queued: one while it keeps up, `flushConcurrency` once it
 * falls behind (the next queued write has waited `flushScaleUpLagMs`, or the dirty set is half of
 * `maxDirtyEntries`), while a `high` write is queued, or while someone waits in `flush()` or a drain. A second
 * connection that only re-writes hot keys sooner takes CPU from the application and Postgres, and coalesces less.
 * The count is re-checked after every batch. With `coalesceHotKeys`, a key written again after it was taken in
 * the current interval is held (see DirtySet) until the next interval tick, so early batches do not re-write hot
 * keys; an early tick never moves the interval tick. Transient failures put the batch back and back off behind a
 * circuit breaker; permanent ones split the batch until the bad rows are alone, and dead-letter each after
 * `maxRetries` attempts.
 *
 * Plain TypeScript (no Nest): the timer, clock and sink are injected, so it runs under fake timers.
 */
export class Flusher {
  readonly counters: FlushCounters = {
    flushes: 0,
    flushedEntries: 0,
    flushErrors: 0,
    retries: 0,
    deadLettered: 0,
    flushDurationMsTotal: 0,
    flushDurationMsMax: 0,
  };
  lastFlushAt: Date | undefined;
  /** Called with the duration (ms) of every committed batch (metrics histogram). */
  onBatchCommitted: ((durationMs: number, rows: number) => void) | undefined;
  lastError: FlushError | undefined;
  /** When the timer last ticked (ms since epoch): liveness. */
  lastTickAt: number;

  private readonly breaker: CircuitBreaker;
  private readonly waiters = new Set<Waiter>();
  private readonly active = new Set<Promise<void>>();
  private round: Promise<void> | undefined;
  private roundWorkers: Promise<void>[] = [];
  private activeWorkers = 0;
  /** Workers the flusher wants now: 1, or flushConcurrency when behind (see {@link targetWorkers}). */
  private wantedWorkers = 1;
  private timerDueAt = Number.POSITIVE_INFINITY;
  /** When the next interval tick is due: it starts a new generation of the dirty set (see coalesceHotKeys). */
  private nextIntervalAt = Number.POSITIVE_INFINITY;
  /** flush() calls (drains included) in progress: while any waits, nothing is held back. */
  private flushCalls = 0;
  private timerRunning = false;
  private closed = false;
  private lastCircuit: CircuitState = 'closed';

  constructor(
    private readonly dirty: DirtySet,
    private readonly sink: FlushSink,
    private readonly listener: FlushListener,
    private readonly options: FlusherOptions,
    private readonly timer: FlushTimer,
    private readonly logger: FlusherLogger,
    private readonly now: () => number = Date.now,
    random: () => number = Math.random,
  ) {
    this.breaker = new CircuitBreaker(
      options.circuitBreakerThreshold,
      options.retryBaseDelayMs,
      options.retryMaxDelayMs,
      random,
    );
    this.lastTickAt = now();
  }

  /** Starts the timer (when `autoFlush`). */
  start(): void {
    if (!this.options.autoFlush || this.closed) return;
    this.timerRunning = true;
    this.lastTickAt = this.now();
    this.nextIntervalAt = this.lastTickAt + this.options.flushIntervalMs;
    this.updateHolding();
    this.arm(this.options.flushIntervalMs);
  }

  /** Stops the timer; rounds in progress finish. */
  stopTimer(): void {
    this.timerRunning = false;
    this.timerDueAt = Number.POSITIVE_INFINITY;
    this.nextIntervalAt = Number.POSITIVE_INFINITY;
    this.timer.clear();
    this.updateHolding();
  }

  /** Batch writers running now: 0 when idle, 1 while the flusher keeps up, up to `flushConcurrency` when behind. */
  get workers(): number {
    return this.activeWorkers;
  }

  get isTimerRunning(): boolean {
    return this.timerRunning;
  }

  circuitState(): CircuitState {
    return this.breaker.state(this.now());
  }

  /**
   * True when the flush timer should have fired by `now` (a full batch or a `high` write armed it, or the
   * interval passed) but has not run yet: the event loop has not turned since. False while the timer is stopped.
   */
  isFlushDue(now: number): boolean {
    return now >= this.timerDueAt;
  }

  /**
   * Runs the tick the timer is due for, now, if it still is: for a writer that yielded because of
   * {@link isFlushDue}. A timer set to 0 ms fires after 1 ms at the earliest, so waiting for it could take many
   * yields of a tight loop; running the tick from the yield takes one.
   */
  tickIfDue(): void {
    if (!this.timerRunning || this.now() < this.timerDueAt) return;
    this.timer.clear();
    this.tick();
  }

  /** Called after each accepted write, to flush early when a batch is full or the write is `high`. */
  notifyWrite(rank: number): void {
    if (!this.timerRunning) return;
    // Writers would soon wait for room: held keys may go (those not written again free a slot).
    if (this.dirty.holding && this.dirtyHalfFull()) this.updateHolding();
    if (this.round !== undefined) {
      // A `high` write may use every connection (it must not wait behind a batch in flight); a full batch may use
      // a wanted worker that is idle. Either way, put it to work now.
      if (rank === 0) this.wantedWorkers = this.options.flushConcurrency;
      if (this.activeWorkers < this.wantedWorkers && (rank === 0 || this.dirty.takeableCount >= this.options.batchSize)) {
        this.topUpWorkers();
      }
      return;
    }
    if (this.dirty.takeableCount >= this.options.batchSize) this.arm(0);
    else if (rank === 0) this.arm(this.options.highPriorityDelayMs);
  }

  /**
   * Persists every entry dirty now; resolves when each is committed (at its version or newer) or
   * dead-lettered. Transient failures are retried with backoff until then, or until `timeoutMs`.
   */
  async flush(options: { timeoutMs?: number } = {}): Promise<FlushReport> {
    const started = this.now();
    const remaining = this.dirty.snapshotVersions();
    const waiter: Waiter = { remaining, committed: 0, deadLettered: 0, superseded: 0, cancelled: false };
    const requested = remaining.size;
    if (requested > 0) {
      this.waiters.add(waiter);
      this.flushCalls++;
      this.updateHolding();
      try {
        await withTimeout(this.driveUntilDone(waiter), options.timeoutMs, () => {
          return new WriteBackFlushTimeoutError(waiter.remaining.size, options.timeoutMs!);
        });
      } finally {
        waiter.cancelled = true;
        this.waiters.delete(waiter);
        this.flushCalls--;
        this.updateHolding();
      }
    }
    return {
      requested,
      committed: waiter.committed,
      deadLettered: waiter.deadLettered,
      durationMs: this.now() - started,
    };
  }

  /**
   * Writes one key now, outside the round order (for `writeThrough`). Resolves with how it ended, or with
   * `queued` plus the error when Postgres did not take it (the entry then stays dirty for the flusher).
   */
  async flushKey(key: string): Promise<{ outcome: Outcome | 'superseded' | 'queued'; error?: unknown }> {
    const first = await this.flushKeyOnce(key);
    // A pooled connection that died while idle (a restart, a failover, pg_terminate_backend) fails the first
    // statement sent on it. The write is guarded by version, so writing it again on a fresh connection is safe:
    // once, so a caller waiting for a commit gets one instead of an error; a database that is really down
    // still fails it.
    if (first.outcome === 'queued' && isLostConnection(first.error)) return this.flushKeyOnce(key);
    return first;
  }

  private async flushKeyOnce(key: string): Promise<{ outcome: Outcome | 'superseded' | 'queued'; error?: unknown }> {
    for (;;) {
      const entry = this.dirty.get(key);
      if (entry === undefined) return { outcome: 'committed' };
      if (!entry.inFlight) break;
      await Promise.allSettled([...this.active]);
    }
    const item = this.dirty.takeKey(key)!;
    const waiter: Waiter = {
      remaining: new Map([[key, item.version]]),
      committed: 0,
      deadLettered: 0,
      superseded: 0,
      cancelled: false,
    };
    this.waiters.add(waiter);
    let failure: unknown;
    try {
      await this.track(this.writeItems([item], (error) => (failure = error)));
    } finally {
      this.waiters.delete(waiter);
    }
    if (waiter.superseded > 0) return { outcome: 'superseded' };
    if (waiter.committed > 0) return { outcome: 'committed' };
    if (waiter.deadLettered > 0) return { outcome: 'deadLettered', error: failure };
    return { outcome: 'queued', error: failure };
  }

  /**
   * Graceful shutdown: stops the timer, flushes for at most `timeoutMs`, then refuses further rounds.
   * Returns how many entries are still dirty.
   */
  async drain(timeoutMs: number): Promise<number> {
    this.stopTimer();
    try {
      await this.flush({ timeoutMs });
    } catch (error) {
      if (!(error instanceof WriteBackFlushTimeoutError)) throw error;
    } finally {
      this.closed = true;
    }
    return this.dirty.size;
  }

  private arm(delayMs: number): void {
    const due = this.now() + delayMs;
    if (due >= this.timerDueAt) return;
    this.timerDueAt = due;
    this.timer.set(() => this.tick(), delayMs);
  }

  /**
   * An interval tick (every `flushIntervalMs`) or an early one (a full batch, a `high` write). An interval tick also
   * starts a new generation: keys held since their last flush are queued again. An early tick does not move the
   * next interval tick.
   */
  private tick(): void {
    this.timerDueAt = Number.POSITIVE_INFINITY;
    if (!this.timerRunning) return;
    const now = this.now();
    this.lastTickAt = now;
    if (now >= this.nextIntervalAt) {
      this.nextIntervalAt = now + this.options.flushIntervalMs;
      this.dirty.nextGeneration();
    }
    try {
      this.updateHolding();
      this.updateCircuitLog();
      if (this.dirty.takeableCount > 0 && this.breaker.waitMs(this.now()) === 0) void this.startRound();
    } catch (error) {
      this.logger.error(`Flush tick failed: ${errorMessage(error)}`);
    }
    this.arm(this.nextIntervalAt - now);
  }

  /**
   * Hot keys are held back (see coalesceHotKeys) only while the interval ticks run and nothing needs them sooner:
   * no flush() or drain waits, and the dirty set is below half of maxDirtyEntries.
   */
  private updateHolding(): void {
    this.dirty.setHolding(
      this.options.coalesceHotKeys &&
        this.timerRunning &&
        !this.closed &&
        this.flushCalls === 0 &&
        !this.dirtyHalfFull(),
    );
  }

  /** Starts a round, or tops up the running one to the workers wanted now. */
  private startRound(): Promise<void> {
    this.wantedWorkers = this.targetWorkers();
    if (this.round === undefined) {
      this.round = this.runRound().finally(() => {
        this.round = undefined;
      });
    } else {
      this.topUpWorkers();
    }
    return this.round;
  }

  private async runRound(): Promise<void> {
    this.topUpWorkers();
    // Workers that find the queue empty exit; ones added while the round runs are awaited too.
    while (this.roundWorkers.length > 0) {
      const workers = this.roundWorkers;
      this.roundWorkers = [];
      await Promise.all(workers);
    }
  }

  private topUpWorkers(): void {
    // Counted, not `while (active < wanted)`: a worker stopped by the breaker returns (and counts down) at once.
    for (let missing = this.wantedWorkers - this.activeWorkers; missing > 0 && this.dirty.takeableCount > 0; missing--) {
      this.activeWorkers++;
      this.roundWorkers.push(this.worker());
    }
  }

  /**
   * One batch at a time until nothing is queued. After each batch it re-checks how many workers are wanted: it
   * exits if there are more than that, or starts the missing ones. The count drops in `finally`, synchronously
   * with the decision, so two workers finishing together never both exit.
   */
  private async worker(): Promise<void> {
    try {
      while (!this.closed && this.breaker.waitMs(this.now()) === 0) {
        const items = this.dirty.take(this.options.batchSize, MAX_BATCH_CHARS);
        if (items.length === 0) return;
        await this.track(this.writeItems(items));
        this.wantedWorkers = this.targetWorkers();
        if (this.activeWorkers > this.wantedWorkers) return;
        this.topUpWorkers();
      }
    } finally {
      this.activeWorkers--;
    }
  }

  /**
   * One worker while the flusher keeps up; `flushConcurrency` when it is behind: the next queued write has waited
   * at least `flushScaleUpLagMs` (the backlog grows faster than one connection drains it), the dirty set is half
   * of `maxDirtyEntries` (writers would soon wait for room), a `high` write is queued (it must not wait behind a
   * batch in flight), or a `flush()` or drain is waiting.
   */
  private targetWorkers(): number {
    const max = this.options.flushConcurrency;
    if (max === 1 || this.waiters.size > 0 || this.dirty.queuedHighCount > 0) return max;
    if (this.dirtyHalfFull()) return max;
    const since = this.dirty.oldestQueuedSince();
    return since !== undefined && this.now() - since >= this.options.flushScaleUpLagMs ? max : 1;
  }

  /** The dirty set holds half of maxDirtyEntries: writers would soon wait for room (scale up, hold nothing). */
  private dirtyHalfFull(): boolean {
    return this.dirty.size * 2 >= this.options.maxDirtyEntries;
  }

  private async driveUntilDone(waiter: Waiter): Promise<void> {
    while (waiter.remaining.size > 0 && !waiter.cancelled) {
      const wait = this.breaker.waitMs(this.now());
      if (wait > 0) {
        await sleep(wait);
      } else if (this.dirty.takeableCount > 0 && !this.closed) {
        await this.startRound();
      } else if (this.active.size > 0) {
        await Promise.allSettled([...this.active]);
      } else {
        // Nothing queued or in flight: whatever is left was cleaned by a path that already reported it.
        for (const key of waiter.remaining.keys()) if (!this.dirty.has(key)) waiter.remaining.delete(key);
        if (waiter.remaining.size > 0 && this.closed) throw new WriteBackClosedError('flush');
        if (waiter.remaining.size > 0) throw new WriteBackFlushStalledError();
      }
    }
  }

  private track(work: Promise<void>): Promise<void> {
    this.active.add(work);
    return work.finally(() => this.active.delete(work));
  }

  /** Writes `items` as one batch; never throws. `onFailure` sees the last error of a row that did not commit. */
  private async writeItems(items: FlushItem[], onFailure?: (error: unknown) => void): Promise<void> {
    const started = this.now();
    let skipped: readonly string[] | void;
    try {
      skipped = await this.sink.writeBatch(items);
    } catch (error) {
      onFailure?.(error);
      return this.onBatchError(items, error, onFailure);
    }
    const duration = this.now() - started;
    this.counters.flushes++;
    this.counters.flushedEntries += items.length;
    this.counters.flushDurationMsTotal += duration;
    if (duration > this.counters.flushDurationMsMax) this.counters.flushDurationMsMax = duration;
    this.onBatchCommitted?.(duration, items.length);
    this.lastFlushAt = new Date();
    if (this.breaker.recordSuccess()) this.logger.log('Postgres accepts writes again: circuit closed');
    this.lastCircuit = 'closed';
    const superseded = skipped && skipped.length > 0 ? new Set(skipped) : undefined;
    for (const item of items) {
      this.settle(item, 'committed', this.dirty.complete(item), superseded?.has(item.key) ?? false);
    }
  }

  private async onBatchError(items: FlushItem[], error: unknown, onFailure?: (error: unknown) => void): Promise<void> {
    const code = errorCode(error);
    this.counters.flushErrors++;
    this.lastError = { code, message: errorMessage(error), at: new Date() };
    if (classifyError(error) === 'transient') {
      for (const item of items) this.dirty.release(item);
      if (this.closed) {
        // The drain gave up and the connection is being closed under this batch: nothing will retry it now.
        this.logger.warn(
          `Flush of ${items.length} entries failed after shutdown began (${code ?? 'no code'}: ${errorMessage(error)}); left dirty, not retried`,
        );
        return;
      }
      const delay = this.breaker.recordFailure(this.now());
      this.counters.retries++;
      this.logger.warn(
        `Flush of ${items.length} entries failed (${code ?? 'no code'}: ${errorMessage(error)}); ` +
          `kept dirty, retry in ${delay} ms (consecutive failures: ${this.breaker.consecutiveFailures})`,
      );
      this.updateCircuitLog();
      return;
    }
    if (items.length > 1) {
      // Isolate the bad rows: the halves that hold none commit.
      const middle = items.length >>> 1;
      await this.writeItems(items.slice(0, middle), onFailure);
      await this.writeItems(items.slice(middle), onFailure);
      return;
    }
    await this.onRowRejected(items[0], error, onFailure);
  }

  private async onRowRejected(item: FlushItem, error: unknown, onFailure?: (error: unknown) => void): Promise<void> {
    const entry = this.dirty.get(item.key);
    // A newer value superseded the rejected one; try that instead. A delta is never superseded by later deltas
    // (they apply on top of it): it is retried and dead-lettered by itself, the later ones flush after it.
    const superseded =
      item.delta === undefined ? entry?.version !== item.version : entry?.flight !== item || !entry.relative;
    if (entry === undefined || superseded) {
      this.dirty.release(item);
      return;
    }
    const now = this.now();
    entry.attempts++;
    if (entry.firstFailedAt === 0) entry.firstFailedAt = now;
    const code = errorCode(error);
    if (entry.attempts < this.options.maxRetries) {
      this.logger.warn(
        `Postgres rejected key "${truncate(displayKey(item.key))}" (${code}: ${errorMessage(error)}); ` +
          `attempt ${entry.attempts} of ${this.options.maxRetries}`,
      );
      return this.writeItems([item], onFailure);
    }
    try {
      await this.sink.insertDeadLetter(item, {
        code,
        message: errorMessage(error),
        attempts: entry.attempts,
        firstFailedAt: new Date(entry.firstFailedAt),
        lastFailedAt: new Date(now),
      });
    } catch (deadLetterError) {
      // Could not record it: keep the row dirty rather than drop it.
      const delay = this.breaker.recordFailure(this.now());
      this.dirty.release(item);
      this.logger.error(
        `Could not dead-letter key "${truncate(displayKey(item.key))}" (${errorMessage(deadLetterError)}); kept dirty, retry in ${delay} ms`,
      );
      return;
    }
    this.counters.deadLettered++;
    this.logger.error(
      `Dead-lettered ${item.delta !== undefined ? 'delta' : item.json === null ? 'delete' : 'upsert'} of key "${truncate(displayKey(item.key))}" version ${item.version} ` +
        `after ${entry.attempts} attempts (${code}: ${errorMessage(error)})`,
    );
    this.settle(item, 'deadLettered', this.dirty.complete(item), false);
  }

  private settle(item: FlushItem, outcome: Outcome, clean: boolean, superseded: boolean): void {
    if (outcome === 'committed') this.listener.onCommitted(item, clean, superseded);
    else this.listener.onDeadLettered(item, clean);
    if (this.waiters.size === 0) return;
    for (const waiter of this.waiters) {
      const target = waiter.remaining.get(item.key);
      if (target === undefined || item.version < target) continue;
      waiter.remaining.delete(item.key);
      if (outcome === 'committed') waiter.committed++;
      else waiter.deadLettered++;
      if (superseded) waiter.superseded++;
    }
  }

  private updateCircuitLog(): void {
    const state = this.breaker.state(this.now());
    if (state === 'open' && this.lastCircuit === 'closed') {
      this.logger.error(
        `Circuit open after ${this.breaker.consecutiveFailures} consecutive flush failures; ` +
          `writes stay in memory and readiness reports down`,
      );
    }
    this.lastCircuit = state === 'half-open' ? this.lastCircuit : state;
  }
}

/** Entity rows are logged as `Entity:[primary key]` (their dirty-set key holds NUL separators). */
function displayKey(key: string): string {
  return isEntityKey(key) ? storedEntityKey(key) : key;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
