import { describe, expect, it } from 'vitest';
import { HybridClock, MAX_INSTANCE_ID, versionInstanceId } from '../../src/write-back/cache/hybrid-clock.js';

describe('HybridClock', () => {
  it('issues wall-clock microseconds with the instance id in the low 8 bits', () => {
    let now = 1_700_000_000_123.456;
    const clock = new HybridClock(7, () => now);
    const first = clock.next();
    expect(versionInstanceId(first)).toBe(7);
    expect(first).toBeGreaterThanOrEqual(1_700_000_000_123_456);
    expect(first - 1_700_000_000_123_456).toBeLessThan(256);
    now = 1_700_000_001_000;
    const later = clock.next();
    expect(versionInstanceId(later)).toBe(7);
    expect(later - 1_700_000_001_000_000).toBeLessThan(256);
    expect(Number.isSafeInteger(later)).toBe(true);
  });

  it('two instances never issue the same version, even at the same instant', () => {
    const a = new HybridClock(1, () => 5000);
    const b = new HybridClock(2, () => 5000);
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) {
      for (const version of [a.next(a.lastIssued), b.next(b.lastIssued)]) {
        expect(seen.has(version)).toBe(false);
        seen.add(version);
      }
    }
  });

  it('a key versions grow strictly (floor), while writes of different keys do not drag the clock ahead', () => {
    const clock = new HybridClock(3, () => 5000);
    const first = clock.next();
    // Many keys in the same instant: the same version, no drift.
    for (let i = 0; i < 10_000; i++) expect(clock.next()).toBe(first);
    // One key written again: above its current version.
    const again = clock.next(first);
    expect(again).toBe(first + 256);
    expect(clock.next(again)).toBe(first + 512);
  });

  it('never goes back when the wall clock does', () => {
    let now = 10_000;
    const clock = new HybridClock(0, () => now);
    const first = clock.next();
    now = 9_000;
    expect(clock.next()).toBe(first);
    now = 20_000;
    const resumed = clock.next();
    expect(resumed - 20_000_000).toBeGreaterThanOrEqual(0);
    expect(resumed - 20_000_000).toBeLessThan(256);
  });

  it('is lifted past every observed version: a write after reading a replica whose clock runs 5 s ahead wins', () => {
    let now = 1_000_000;
    const ahead = new HybridClock(1, () => now + 5000);
    const behind = new HybridClock(2, () => now);
    const read = ahead.next();
    behind.observe(read);
    now += 1;
    const write = behind.next(); // no floor: the key is not in memory any more
    expect(write).toBeGreaterThan(read);
    expect(versionInstanceId(write)).toBe(2);
    expect(behind.highestObserved).toBe(read);
    // Observing something older changes nothing.
    behind.observe(5);
    expect(behind.highestObserved).toBe(read);
  });

  it('rejects instance ids outside 0..255', () => {
    expect(MAX_INSTANCE_ID).toBe(255);
    expect(() => new HybridClock(-1)).toThrow(RangeError);
    expect(() => new HybridClock(256)).toThrow(RangeError);
    expect(() => new HybridClock(1.5)).toThrow(RangeError);
  });
});
