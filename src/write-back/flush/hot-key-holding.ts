import type { FlushQueue } from './flush-queue.js';

/**
 * The hot-key policy (`coalesceHotKeys`): a key written again after a batch took it in the current interval is
 * held until the next interval tick (the dirty set keeps the hold queues), so early batches do not re-write hot
 * keys. Holding is on only while the interval ticks run and nothing needs the keys sooner: no `flush()` or drain
 * waits, and the dirty set is below half of `maxDirtyEntries` (writers would soon wait for room). Every decision
 * about holding is made here; the flusher only reports what happened.
 */
export class HotKeyHolding {
  private on = false;
  private timerRunning = false;
  private closed = false;
  /** flush() calls (drains included) in progress: while any waits, nothing is held back. */
  private flushCalls = 0;

  constructor(
    private readonly queue: FlushQueue,
    private readonly enabled: boolean,
    private readonly maxDirtyEntries: number,
  ) {}

  timerStarted(): void {
    this.timerRunning = true;
    this.update();
  }

  timerStopped(): void {
    this.timerRunning = false;
    this.update();
  }

  /** The shutdown drain is over: nothing is held from now on. */
  close(): void {
    this.closed = true;
    this.update();
  }

  flushStarted(): void {
    this.flushCalls++;
    this.update();
  }

  flushEnded(): void {
    this.flushCalls--;
    this.update();
  }

  /** After an accepted write: once writers would soon wait for room, held keys go (those not written again free a slot). */
  written(): void {
    if (this.on && this.halfFull()) this.update();
  }

  /** A timer tick; an interval tick starts a new generation (keys held since their last flush are queued again). */
  ticked(interval: boolean): void {
    if (interval) this.queue.nextGeneration();
    this.update();
  }

  /** The dirty set holds half of maxDirtyEntries: writers would soon wait for room (scale up, hold nothing). */
  halfFull(): boolean {
    return this.queue.size * 2 >= this.maxDirtyEntries;
  }

  private update(): void {
    this.on = this.enabled && this.timerRunning && !this.closed && this.flushCalls === 0 && !this.halfFull();
    this.queue.setHolding(this.on);
  }
}
