import type {
  CircuitState,
  FlushCounters,
  FlushError,
  FlusherLogger,
  FlushItem,
  FlushOutcome,
  FlushReport,
  FlushSink,
  FlushStatus,
  FlushTimer,
} from '../model/types.js';
import { WriteBackFlushTimeoutError } from '../write-back.errors.js';
import { BatchWriter, type BatchWriterOptions } from './batch-writer.js';
import type { FlushQueue } from './flush-queue.js';
import { FlushScheduler } from './flush-scheduler.js';
import { FlushWaiters } from './flush-waiters.js';
import { HotKeyHolding } from './hot-key-holding.js';
import { WorkerPool, type WorkerPoolOptions } from './worker-pool.js';
import { writeThrough, type WriteThroughResult } from './write-through.js';

export interface FlusherOptions extends BatchWriterOptions, WorkerPoolOptions {
  autoFlush: boolean;
  flushIntervalMs: number;
  highPriorityDelayMs: number;
  /** Half of it scales the workers up and stops holding hot keys. */
  maxDirtyEntries: number;
  /** Hold keys re-written after being taken in this interval until the next interval tick (see HotKeyHolding). */
  coalesceHotKeys: boolean;
}

/**
 * Moves dirty entries to Postgres in batches, from the parts of this folder: the {@link FlushScheduler} ticks, a
 * tick starts a round of the {@link WorkerPool} unless one runs, its workers hand batches to the
 * {@link BatchWriter} (failure policy), {@link HotKeyHolding} decides which re-written keys wait for the next
 * interval, {@link FlushWaiters} answers `flush()` and {@link writeThrough} writes one key now. This class wires
 * them, tells them about writes and ticks, and drains at shutdown.
 *
 * Plain TypeScript (no Nest): the timer, clock and sink are injected, so it runs under fake timers.
 */
export class Flusher implements FlushStatus {
  private readonly writer: BatchWriter;
  private readonly holding: HotKeyHolding;
  private readonly pool: WorkerPool;
  private readonly waiters: FlushWaiters;
  private readonly scheduler: FlushScheduler;

  constructor(
    private readonly queue: FlushQueue,
    sink: FlushSink,
    private readonly options: FlusherOptions,
    timer: FlushTimer,
    logger: FlusherLogger,
    private readonly now: () => number = Date.now,
    random: () => number = Math.random,
  ) {
    const settle = (item: FlushItem, outcome: FlushOutcome, superseded: boolean) => this.settle(item, outcome, superseded);
    this.writer = new BatchWriter(queue, sink, options, logger, now, random, settle);
    this.holding = new HotKeyHolding(queue, options.coalesceHotKeys, options.maxDirtyEntries);
    this.pool = new WorkerPool(queue, this.writer, options, () => this.waiters.size > 0 || this.holding.halfFull(), now);
    this.waiters = new FlushWaiters(queue, this.writer, this.pool, this.holding, now);
    this.scheduler = new FlushScheduler(timer, options.flushIntervalMs, (interval) => this.ticked(interval), logger, now);
  }

  get counters(): Readonly<FlushCounters> {
    return this.writer.counters;
  }

  get lastFlushAt(): Date | undefined {
    return this.writer.lastFlushAt;
  }

  get lastError(): FlushError | undefined {
    return this.writer.lastError;
  }

  get lastTickAt(): number {
    return this.scheduler.lastTickAt;
  }

  get workers(): number {
    return this.pool.workers;
  }

  get isTimerRunning(): boolean {
    return this.scheduler.isRunning;
  }

  circuitState(): CircuitState {
    return this.writer.circuitState();
  }

  /** Called with the duration (ms) and rows of every committed batch (metrics histogram). */
  set onBatchCommitted(listener: ((durationMs: number, rows: number) => void) | undefined) {
    this.writer.onBatchCommitted = listener;
  }

  /** Starts the timer (when `autoFlush`). */
  start(): void {
    if (!this.options.autoFlush || this.writer.closed) return;
    this.scheduler.start();
    this.holding.timerStarted();
  }

  /** Stops the timer; rounds in progress finish. */
  stopTimer(): void {
    this.scheduler.stop();
    this.holding.timerStopped();
  }

  /** See FlushScheduler.isDue: a writer in a tight loop then yields once, for the due flush to start. */
  isFlushDue(now: number): boolean {
    return this.scheduler.isDue(now);
  }

  tickIfDue(): void {
    this.scheduler.tickIfDue();
  }

  /** Called after each accepted write, to flush early when a batch is full or the write is `high`. */
  notifyWrite(rank: number): void {
    if (!this.scheduler.isRunning) return;
    this.holding.written();
    if (this.pool.isRunning) return this.pool.written(rank);
    if (this.queue.takeableCount >= this.options.batchSize) this.scheduler.arm(0);
    else if (rank === 0) this.scheduler.arm(this.options.highPriorityDelayMs);
  }

  /** See FlushWaiters.flush. */
  flush(options: { timeoutMs?: number } = {}): Promise<FlushReport> {
    return this.waiters.flush(options);
  }

  /** See writeThrough. */
  flushKey(key: string): Promise<WriteThroughResult> {
    return writeThrough(this.queue, this.writer, this.waiters, key);
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
      this.writer.closed = true;
      this.holding.close();
    }
    return this.queue.size;
  }

  private ticked(interval: boolean): void {
    this.holding.ticked(interval);
    this.writer.logCircuit();
    if (this.queue.takeableCount > 0 && this.writer.waitMs() === 0) void this.pool.start();
  }

  private settle(item: FlushItem, outcome: FlushOutcome, superseded: boolean): void {
    this.queue.complete(item, outcome, superseded);
    this.waiters.settle(item, outcome, superseded);
  }
}
