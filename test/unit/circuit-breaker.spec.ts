import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from '../../src/write-back/flush/circuit-breaker.js';

const ONE = () => 1; // no jitter: the delay is the capped exponential delay

describe('CircuitBreaker', () => {
  it('starts closed and lets attempts through', () => {
    const breaker = new CircuitBreaker(3, 100, 10_000, ONE);
    expect(breaker.state(0)).toBe('closed');
    expect(breaker.waitMs(0)).toBe(0);
    expect(breaker.consecutiveFailures).toBe(0);
  });

  it('stays closed below the threshold but delays the next attempt by the backoff', () => {
    const breaker = new CircuitBreaker(3, 100, 10_000, ONE);
    expect(breaker.recordFailure(1000)).toBe(100);
    expect(breaker.state(1000)).toBe('closed');
    expect(breaker.waitMs(1000)).toBe(100);
    expect(breaker.waitMs(1050)).toBe(50);
    expect(breaker.waitMs(1100)).toBe(0);
    expect(breaker.recordFailure(1100)).toBe(200);
    expect(breaker.state(1100)).toBe('closed');
    expect(breaker.consecutiveFailures).toBe(2);
  });

  it('opens at the threshold, is open while waiting, half-open once the delay passed', () => {
    const breaker = new CircuitBreaker(3, 100, 10_000, ONE);
    breaker.recordFailure(0);
    breaker.recordFailure(100);
    expect(breaker.recordFailure(300)).toBe(400);
    expect(breaker.state(300)).toBe('open');
    expect(breaker.state(699)).toBe('open');
    expect(breaker.waitMs(699)).toBe(1);
    expect(breaker.state(700)).toBe('half-open');
    expect(breaker.waitMs(700)).toBe(0);
    // The half-open attempt fails: open again, for longer.
    expect(breaker.recordFailure(700)).toBe(800);
    expect(breaker.state(701)).toBe('open');
    expect(breaker.state(1500)).toBe('half-open');
  });

  it('a success closes it and returns true only when it was open (or half-open)', () => {
    const breaker = new CircuitBreaker(2, 100, 10_000, ONE);
    expect(breaker.recordSuccess()).toBe(false);
    breaker.recordFailure(0);
    expect(breaker.recordSuccess()).toBe(false); // one failure: it was closed
    expect(breaker.consecutiveFailures).toBe(0);
    expect(breaker.waitMs(0)).toBe(0);

    breaker.recordFailure(0);
    breaker.recordFailure(0);
    expect(breaker.state(1)).toBe('open');
    expect(breaker.recordSuccess()).toBe(true);
    expect(breaker.state(1)).toBe('closed');
    expect(breaker.waitMs(1)).toBe(0);
    expect(breaker.recordSuccess()).toBe(false);

    breaker.recordFailure(0);
    breaker.recordFailure(0);
    expect(breaker.state(1_000_000)).toBe('half-open');
    expect(breaker.recordSuccess()).toBe(true);
  });

  it('after a success the backoff starts again from the base delay', () => {
    const breaker = new CircuitBreaker(3, 100, 10_000, ONE);
    breaker.recordFailure(0);
    breaker.recordFailure(0);
    breaker.recordFailure(0);
    breaker.recordSuccess();
    expect(breaker.recordFailure(0)).toBe(100);
  });

  it('caps the delay at the maximum and applies jitter', () => {
    const capped = new CircuitBreaker(1, 100, 1000, ONE);
    for (let i = 0; i < 10; i++) capped.recordFailure(0);
    expect(capped.recordFailure(0)).toBe(1000);
    const jittered = new CircuitBreaker(1, 100, 1000, () => 0);
    expect(jittered.recordFailure(0)).toBe(50);
  });
});
