import { isEntityKey, storedEntityKey } from '../model/entity-key.js';
import type {
  CircuitState,
  FlushCounters,
  FlushError,
  FlusherLogger,
  FlushItem,
  FlushOutcome,
  FlushSink,
} from '../model/types.js';
import { classifyError, errorCode } from '../store/error-classifier.js';
import { errorMessage, truncate } from '../write-back.errors.js';
import { CircuitBreaker } from './circuit-breaker.js';
import type { FlushQueue } from './flush-queue.js';

export interface BatchWriterOptions {
  maxRetries: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
  circuitBreakerThreshold: number;
}

/**
 * Writes one batch to the store and applies the failure policy: a transient failure puts the batch back and
 * backs off behind a circuit breaker (logged when it opens and closes); a permanent one splits the batch until
 * the bad rows are alone, and dead-letters each after `maxRetries` attempts. Every item that leaves the in-flight
 * state for good is reported to `settle`.
 */
export class BatchWriter {
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
  lastError: FlushError | undefined;
  /** Called with the duration (ms) of every committed batch (metrics histogram). */
  onBatchCommitted: ((durationMs: number, rows: number) => void) | undefined;
  /** Set once the shutdown drain is over: a batch failing after it is left dirty, not retried. */
  closed = false;
  private readonly breaker: CircuitBreaker;
  private lastCircuit: CircuitState = 'closed';
  private readonly active = new Set<Promise<void>>();

  constructor(
    private readonly queue: FlushQueue,
    private readonly sink: FlushSink,
    private readonly options: BatchWriterOptions,
    private readonly logger: FlusherLogger,
    private readonly now: () => number,
    random: () => number,
    private readonly settle: (item: FlushItem, outcome: FlushOutcome, superseded: boolean) => void,
  ) {
    const { circuitBreakerThreshold, retryBaseDelayMs, retryMaxDelayMs } = options;
    this.breaker = new CircuitBreaker(circuitBreakerThreshold, retryBaseDelayMs, retryMaxDelayMs, random);
  }

  /** Writes `items` as one batch; never throws. `onFailure` sees the last error of a row that did not commit. */
  write(items: FlushItem[], onFailure?: (error: unknown) => void): Promise<void> {
    const work = this.writeItems(items, onFailure);
    this.active.add(work);
    return work.finally(() => this.active.delete(work));
  }

  /** Whether a batch is being written now. */
  get busy(): boolean {
    return this.active.size > 0;
  }

  /** Resolves once every batch being written now has ended. */
  async whenIdle(): Promise<void> {
    await Promise.allSettled([...this.active]);
  }

  /** Ms until the circuit breaker lets the next attempt through (0: now). */
  waitMs(): number {
    return this.breaker.waitMs(this.now());
  }

  circuitState(): CircuitState {
    return this.breaker.state(this.now());
  }

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
    for (const item of items) this.settle(item, 'committed', superseded?.has(item.key) ?? false);
  }

  private async onBatchError(items: FlushItem[], error: unknown, onFailure?: (error: unknown) => void): Promise<void> {
    const code = errorCode(error);
    this.counters.flushErrors++;
    this.lastError = { code, message: errorMessage(error), at: new Date() };
    if (classifyError(error) === 'transient') {
      for (const item of items) this.queue.release(item);
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
      this.logCircuit();
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
    const now = this.now();
    // Undefined: a newer value superseded the rejected one, which was put back to be written instead.
    const entry = this.queue.recordRejection(item, now);
    if (entry === undefined) return;
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
      this.queue.release(item);
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
    this.settle(item, 'deadLettered', false);
  }

  /** Logs the circuit opening (once per opening: it closes with the next committed batch). */
  logCircuit(): void {
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
