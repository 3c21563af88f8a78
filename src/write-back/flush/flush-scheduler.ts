import { errorMessage } from '../write-back.errors.js';
import type { FlusherLogger, FlushTimer } from '../model/types.js';

/**
 * When flushes start: a self-rescheduling timer ticks every `flushIntervalMs` (an interval tick), and earlier when
 * armed for a full batch or a `high` write (an early tick, which never moves the next interval tick). A slow tick
 * never overlaps the next: the timer is re-armed after it. `onTick` errors are logged, never thrown at the timer.
 */
export class FlushScheduler {
  /** When the timer last ticked (ms since epoch): liveness. */
  lastTickAt: number;
  private running = false;
  private dueAt = Number.POSITIVE_INFINITY;
  /** When the next interval tick is due. */
  private nextIntervalAt = Number.POSITIVE_INFINITY;

  constructor(
    private readonly timer: FlushTimer,
    private readonly intervalMs: number,
    private readonly onTick: (interval: boolean) => void,
    private readonly logger: FlusherLogger,
    private readonly now: () => number,
  ) {
    this.lastTickAt = now();
  }

  get isRunning(): boolean {
    return this.running;
  }

  start(): void {
    this.running = true;
    this.lastTickAt = this.now();
    this.nextIntervalAt = this.lastTickAt + this.intervalMs;
    this.arm(this.intervalMs);
  }

  stop(): void {
    this.running = false;
    this.dueAt = Number.POSITIVE_INFINITY;
    this.nextIntervalAt = Number.POSITIVE_INFINITY;
    this.timer.clear();
  }

  /**
   * True when the timer should have fired by `now` (a full batch or a `high` write armed it, or the interval
   * passed) but has not run yet: the event loop has not turned since. False while the timer is stopped.
   */
  isDue(now: number): boolean {
    return now >= this.dueAt;
  }

  /**
   * Runs the tick the timer is due for, now, if it still is: for a writer that yielded because of {@link isDue}.
   * A timer set to 0 ms fires after 1 ms at the earliest, so waiting for it could take many yields of a tight loop;
   * running the tick from the yield takes one.
   */
  tickIfDue(): void {
    if (!this.running || this.now() < this.dueAt) return;
    this.timer.clear();
    this.tick();
  }

  /** Ticks within `delayMs`, unless a tick is due sooner already. */
  arm(delayMs: number): void {
    const due = this.now() + delayMs;
    if (due >= this.dueAt) return;
    this.dueAt = due;
    this.timer.set(() => this.tick(), delayMs);
  }

  private tick(): void {
    this.dueAt = Number.POSITIVE_INFINITY;
    if (!this.running) return;
    const now = this.now();
    this.lastTickAt = now;
    const interval = now >= this.nextIntervalAt;
    if (interval) this.nextIntervalAt = now + this.intervalMs;
    try {
      this.onTick(interval);
    } catch (error) {
      this.logger.error(`Flush tick failed: ${errorMessage(error)}`);
    }
    this.arm(this.nextIntervalAt - now);
  }
}
