import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../../src/write-back/backoff.js';

const ONE = () => 1;
const ZERO = () => 0;

describe('backoffDelay', () => {
  it('grows exponentially from the base delay (failures count from 1)', () => {
    expect([1, 2, 3, 4, 5].map((n) => backoffDelay(n, 100, 1_000_000, ONE))).toEqual([100, 200, 400, 800, 1600]);
  });

  it('is capped at the maximum', () => {
    expect(backoffDelay(5, 100, 1000, ONE)).toBe(1000);
    expect(backoffDelay(50, 100, 30_000, ONE)).toBe(30_000);
    expect(backoffDelay(10_000, 100, 30_000, ONE)).toBe(30_000);
  });

  it('stays finite for huge failure counts', () => {
    const delay = backoffDelay(Number.MAX_SAFE_INTEGER, 1, Number.MAX_SAFE_INTEGER, ONE);
    expect(Number.isFinite(delay)).toBe(true);
  });

  it('treats a failure count below 1 as the first failure', () => {
    expect(backoffDelay(0, 100, 1000, ONE)).toBe(100);
    expect(backoffDelay(-3, 100, 1000, ONE)).toBe(100);
  });

  it('jitter stays within [capped / 2, capped]', () => {
    expect(backoffDelay(3, 100, 10_000, ZERO)).toBe(200);
    expect(backoffDelay(3, 100, 10_000, ONE)).toBe(400);
    expect(backoffDelay(3, 100, 10_000, () => 0.5)).toBe(300);
    // At the cap too.
    expect(backoffDelay(20, 100, 1000, ZERO)).toBe(500);
    expect(backoffDelay(20, 100, 1000, ONE)).toBe(1000);
    for (let failures = 1; failures <= 12; failures++) {
      const capped = Math.min(5000, 100 * 2 ** (failures - 1));
      for (let i = 0; i < 20; i++) {
        const delay = backoffDelay(failures, 100, 5000);
        expect(delay).toBeGreaterThanOrEqual(capped / 2);
        expect(delay).toBeLessThanOrEqual(capped);
      }
    }
  });

  it('uses its random source (two draws differ)', () => {
    const draws = [0.1, 0.9];
    const random = () => draws.shift()!;
    expect(backoffDelay(4, 100, 10_000, random)).not.toBe(backoffDelay(4, 100, 10_000, random));
  });
});
