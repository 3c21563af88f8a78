import type { FlushItem, FlushOutcome, FlushReport } from '../model/types.js';
import { withTimeout } from '../with-timeout.js';
import { WriteBackClosedError, WriteBackFlushStalledError, WriteBackFlushTimeoutError } from '../write-back.errors.js';
import type { BatchWriter } from './batch-writer.js';
import type { FlushQueue } from './flush-queue.js';
import type { HotKeyHolding } from './hot-key-holding.js';
import type { WorkerPool } from './worker-pool.js';

/** One `flush()` (or write-through) waiting for keys to reach Postgres at a version. */
export interface FlushWaiter {
  /** Key -> the version (or a newer one) that must commit or be dead-lettered. */
  readonly remaining: Map<string, number>;
  committed: number;
  deadLettered: number;
  superseded: number;
  /** Set when the waiter gave up (its timeout): whoever drives the flush for it stops. */
  cancelled: boolean;
}

/**
 * `flush()` calls and write-throughs waiting now: each waits for the keys it snapshotted to be committed or
 * dead-lettered at their version (or a newer one), told by {@link settle} about every item that left the in-flight
 * state. A `flush()` drives rounds itself until then, also past the timer (stopped, or not yet due).
 */
export class FlushWaiters {
  private readonly waiters = new Set<FlushWaiter>();

  constructor(
    private readonly queue: FlushQueue,
    private readonly writer: BatchWriter,
    private readonly pool: WorkerPool,
    private readonly holding: HotKeyHolding,
    private readonly now: () => number,
  ) {}

  get size(): number {
    return this.waiters.size;
  }

  /** Starts waiting for `remaining`; {@link remove} it when done. */
  add(remaining: Map<string, number>): FlushWaiter {
    const waiter: FlushWaiter = { remaining, committed: 0, deadLettered: 0, superseded: 0, cancelled: false };
    this.waiters.add(waiter);
    return waiter;
  }

  remove(waiter: FlushWaiter): void {
    this.waiters.delete(waiter);
  }

  /** `item` ended for good: every waiter for its key at its version or an older one counts it. */
  settle(item: FlushItem, outcome: FlushOutcome, superseded: boolean): void {
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

  /**
   * Persists every entry dirty now; resolves when each is committed (at its version or newer) or
   * dead-lettered. Transient failures are retried with backoff until then, or until `timeoutMs`.
   */
  async flush(options: { timeoutMs?: number } = {}): Promise<FlushReport> {
    const started = this.now();
    const remaining = this.queue.snapshotVersions();
    const requested = remaining.size;
    if (requested === 0) return { requested, committed: 0, deadLettered: 0, durationMs: this.now() - started };
    const waiter = this.add(remaining);
    this.holding.flushStarted();
    try {
      await withTimeout(this.driveUntilDone(waiter), options.timeoutMs, () => {
        return new WriteBackFlushTimeoutError(waiter.remaining.size, options.timeoutMs!);
      });
    } finally {
      waiter.cancelled = true;
      this.remove(waiter);
      this.holding.flushEnded();
    }
    return { requested, committed: waiter.committed, deadLettered: waiter.deadLettered, durationMs: this.now() - started };
  }

  private async driveUntilDone(waiter: FlushWaiter): Promise<void> {
    while (waiter.remaining.size > 0 && !waiter.cancelled) {
      const wait = this.writer.waitMs();
      if (wait > 0) {
        await sleep(wait);
      } else if (this.queue.takeableCount > 0 && !this.writer.closed) {
        await this.pool.start();
      } else if (this.writer.busy) {
        await this.writer.whenIdle();
      } else {
        // Nothing queued or in flight: whatever is left was cleaned by a path that already reported it.
        for (const key of waiter.remaining.keys()) if (!this.queue.has(key)) waiter.remaining.delete(key);
        if (waiter.remaining.size > 0 && this.writer.closed) throw new WriteBackClosedError('flush');
        if (waiter.remaining.size > 0) throw new WriteBackFlushStalledError();
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
