import type { CircuitState } from '../model/types.js';
import { backoffDelay } from '../backoff.js';

/**
 * Gates flush attempts after transient failures. Every transient failure delays the next attempt by an
 * exponential backoff with jitter; after `threshold` consecutive failures the circuit counts as open (readiness
 * turns down) until an attempt succeeds. When the delay has passed, one attempt is let through (half-open).
 */
export class CircuitBreaker {
  private failures = 0;
  private nextAttemptAt = 0;

  constructor(
    private readonly threshold: number,
    private readonly baseDelayMs: number,
    private readonly maxDelayMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  get consecutiveFailures(): number {
    return this.failures;
  }

  state(now: number): CircuitState {
    if (this.failures < this.threshold) return 'closed';
    return now < this.nextAttemptAt ? 'open' : 'half-open';
  }

  /** Ms until an attempt is allowed (0 = now). */
  waitMs(now: number): number {
    return Math.max(0, this.nextAttemptAt - now);
  }

  /** Records a transient failure and returns the delay before the next attempt. */
  recordFailure(now: number): number {
    this.failures++;
    const delay = backoffDelay(this.failures, this.baseDelayMs, this.maxDelayMs, this.random);
    this.nextAttemptAt = now + delay;
    return delay;
  }

  /** Returns true if the circuit was not closed before (so the caller can log that it closed). */
  recordSuccess(): boolean {
    const wasOpen = this.failures >= this.threshold;
    this.failures = 0;
    this.nextAttemptAt = 0;
    return wasOpen;
  }
}
