import { describe, expect, it } from 'vitest';
import { VersionClock } from '../../src/write-back/cache/version-clock.js';

describe('VersionClock', () => {
  it('issues microseconds since the epoch', () => {
    let now = 1_700_000_000_123.456;
    const clock = new VersionClock(() => now);
    expect(clock.next()).toBe(1_700_000_000_123_456);
    now = 1_700_000_000_200;
    expect(clock.next()).toBe(1_700_000_000_200_000);
  });

  it('uses Date.now by default (versions are wall-clock microseconds)', () => {
    const before = Date.now() * 1000;
    const version = new VersionClock().next();
    const after = Date.now() * 1000;
    expect(version).toBeGreaterThanOrEqual(before);
    expect(version).toBeLessThanOrEqual(after + 1);
    expect(Number.isSafeInteger(version)).toBe(true);
  });

  it('is strictly increasing while the clock stands still', () => {
    const clock = new VersionClock(() => 5000);
    const versions = Array.from({ length: 1000 }, () => clock.next());
    expect(versions[0]).toBe(5_000_000);
    for (let i = 1; i < versions.length; i++) expect(versions[i]).toBe(versions[i - 1] + 1);
  });

  it('is strictly increasing while the clock goes backwards', () => {
    let now = 10_000;
    const clock = new VersionClock(() => now);
    const first = clock.next();
    now = 9_000;
    const second = clock.next();
    now = 1;
    const third = clock.next();
    expect(second).toBeGreaterThan(first);
    expect(third).toBeGreaterThan(second);
    // And it follows the clock again once it passes the last version.
    now = 20_000;
    expect(clock.next()).toBe(20_000_000);
  });

  it('lifts the version above the floor (a version already seen for the key)', () => {
    const clock = new VersionClock(() => 1000);
    expect(clock.next(5_000_000_000)).toBe(5_000_000_001);
    // The floor also lifts later versions: the clock never goes back below what it issued.
    expect(clock.next()).toBe(5_000_000_002);
    // A floor below the clock changes nothing.
    expect(clock.next(3)).toBe(5_000_000_003);
  });
});
