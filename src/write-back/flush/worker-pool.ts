import type { BatchWriter } from './batch-writer.js';
import type { FlushQueue } from './flush-queue.js';

/** A batch is one jsonb parameter, and jsonb values stop near 256 MB: keep well below, whatever batchSize says. */
const MAX_BATCH_CHARS = 32 * 1024 * 1024;

export interface WorkerPoolOptions {
  batchSize: number;
  flushConcurrency: number;
  /** Beyond one batch at a time, more (up to flushConcurrency) run only once the next queued write waited this long. */
  flushScaleUpLagMs: number;
}

/**
 * A round of batch writers that take batches until nothing is queued: one while the flusher keeps up,
 * `flushConcurrency` once it falls behind (see {@link targetWorkers}). A second connection that only re-writes hot
 * keys sooner takes CPU from the application and Postgres, and coalesces less. The count is re-checked after every
 * batch.
 */
export class WorkerPool {
  private round: Promise<void> | undefined;
  private roundWorkers: Promise<void>[] = [];
  private activeWorkers = 0;
  /** Workers wanted now: 1, or flushConcurrency when behind. */
  private wantedWorkers = 1;

  constructor(
    private readonly queue: FlushQueue,
    private readonly writer: BatchWriter,
    private readonly options: WorkerPoolOptions,
    /** A `flush()` or drain waits, or writers would soon wait for room: every worker is wanted. */
    private readonly urgent: () => boolean,
    private readonly now: () => number,
  ) {}

  /** Batch writers running now: 0 when idle, 1 while the flusher keeps up, up to `flushConcurrency` when behind. */
  get workers(): number {
    return this.activeWorkers;
  }

  get isRunning(): boolean {
    return this.round !== undefined;
  }

  /** Starts a round, or tops up the running one to the workers wanted now. */
  start(): Promise<void> {
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

  /**
   * A write was accepted while the round runs. A `high` write may use every connection (it must not wait behind a
   * batch in flight); a full batch may use a wanted worker that is idle. Either way, put it to work now.
   */
  written(rank: number): void {
    if (rank === 0) this.wantedWorkers = this.options.flushConcurrency;
    if (this.activeWorkers < this.wantedWorkers && (rank === 0 || this.queue.takeableCount >= this.options.batchSize)) {
      this.topUpWorkers();
    }
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
    for (let missing = this.wantedWorkers - this.activeWorkers; missing > 0 && this.queue.takeableCount > 0; missing--) {
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
      while (!this.writer.closed && this.writer.waitMs() === 0) {
        const items = this.queue.take(this.options.batchSize, MAX_BATCH_CHARS);
        if (items.length === 0) return;
        await this.writer.write(items);
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
   * at least `flushScaleUpLagMs` (the backlog grows faster than one connection drains it), a `high` write is queued
   * (it must not wait behind a batch in flight), or it is {@link urgent}.
   */
  private targetWorkers(): number {
    const max = this.options.flushConcurrency;
    if (max === 1 || this.urgent() || this.queue.queuedHighCount > 0) return max;
    const since = this.queue.oldestQueuedSince();
    return since !== undefined && this.now() - since >= this.options.flushScaleUpLagMs ? max : 1;
  }
}
