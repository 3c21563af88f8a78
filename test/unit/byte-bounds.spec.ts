import { describe, expect, it } from 'vitest';
import { CleanCache } from '../../src/write-back/cache/clean-cache.js';
import { PRIORITY_RANK } from '../../src/write-back/cache/dirty-set.js';
import { cacheWithDirtySet, flushAll } from '../support/cache-with-dirty-set.js';
import { resolveWriteBackOptions } from '../../src/write-back/write-back.options.js';
import { WriteBackConfigError } from '../../src/write-back/write-back.errors.js';

const NORMAL = PRIORITY_RANK.normal;
const URL = 'postgres://localhost/db';

function makeCache(maxDirtyBytes: number, maxCleanBytes = Number.MAX_SAFE_INTEGER, maxDirtyEntries = 1000) {
  return cacheWithDirtySet(1000, maxDirtyEntries, async () => undefined, maxDirtyBytes, maxCleanBytes);
}

describe('byte bounds (maxDirtyBytes, maxCleanBytes)', () => {
  it('counts the characters of dirty keys and values through writes, rewrites, deletes and flushes', () => {
    const { cache, dirty } = makeCache(1_000_000);
    cache.write('ab', '"xyz"', NORMAL);
    expect(cache.dirty.bytes).toBe(2 + 5);
    cache.write('ab', '1', NORMAL);
    expect(cache.dirty.bytes).toBe(2 + 1);
    cache.write('c', null, NORMAL);
    expect(cache.dirty.bytes).toBe(3 + 1);
    // A write while the key is in flight replaces the value held; the flushed snapshot does not count twice.
    const [item] = dirty.take(1);
    cache.write(item.key, '"longer"', NORMAL);
    expect(cache.dirty.bytes).toBe(2 + 8 + 1);
    cache.onCommitted(item, dirty.complete(item));
    expect(cache.dirty.bytes).toBe(2 + 8 + 1);
    flushAll(cache, dirty);
    expect(cache.dirty.bytes).toBe(0);
  });

  it('has no room for a write that would pass maxDirtyBytes; a rewrite that does not grow always fits', () => {
    const { cache, dirty } = makeCache(100);
    const value = `"${'v'.repeat(38)}"`; // 40 characters
    cache.write('k1', value, NORMAL); // 42
    cache.write('k2', value, NORMAL); // 84
    expect(cache.hasRoomFor('k3', value.length)).toBe(false);
    expect(cache.fullBound('k3')).toBe('maxDirtyBytes');
    expect(cache.hasRoomFor('k3', 14)).toBe(true); // 84 + 2 + 14 = 100
    expect(cache.hasRoomFor('k1', value.length)).toBe(true);
    expect(cache.hasRoomFor('k1', value.length + 16)).toBe(true); // 84 + 16 = 100
    expect(cache.hasRoomFor('k1', value.length + 17)).toBe(false);
    flushAll(cache, dirty);
    expect(cache.hasRoomFor('k3', value.length)).toBe(true);
  });

  it('names maxDirtyEntries when the entries, not the bytes, are full', () => {
    const { cache, dirty } = makeCache(1_000_000, Number.MAX_SAFE_INTEGER, 1);
    cache.write('a', '1', NORMAL);
    expect(cache.hasRoomFor('b', 1)).toBe(false);
    expect(cache.fullBound('b')).toBe('maxDirtyEntries');
  });

  it('evicts clean entries least-recently-used beyond maxCleanBytes, and does not cache one larger than the bound', () => {
    const clean = new CleanCache(1000, 100);
    for (let i = 0; i < 5; i++) clean.set(`k${i}`, { json: 'x'.repeat(28), version: i }); // 30 each
    expect(clean.size).toBe(3);
    expect(clean.bytes).toBe(90);
    expect(clean.peek('k0')).toBeUndefined();
    expect(clean.peek('k4')).toBeDefined();
    clean.set('huge', { json: 'x'.repeat(200), version: 9 });
    expect(clean.peek('huge')).toBeUndefined();
    expect(clean.bytes).toBeLessThanOrEqual(100);
  });

  it('defaults fit a 512 MiB container and maxDirtyBytes must hold the largest write', () => {
    const defaults = resolveWriteBackOptions({ url: URL });
    expect(defaults.maxDirtyBytes + defaults.maxCleanBytes).toBeLessThanOrEqual(128 * 1024 * 1024);
    expect(defaults.dirtyBytesHighWatermark).toBe(Math.floor(defaults.maxDirtyBytes * 0.8));
    expect(() => resolveWriteBackOptions({ url: URL, maxDirtyBytes: 1024 * 1024 })).toThrow(WriteBackConfigError);
    expect(() => resolveWriteBackOptions({ url: URL, maxDirtyBytes: 1024 * 1024 })).toThrow(/maxDirtyBytes.*maxValueBytes \+ maxKeyLength/);
    expect(resolveWriteBackOptions({ url: URL, maxDirtyBytes: 2 * 1024 * 1024 }).maxDirtyBytes).toBe(2 * 1024 * 1024);
  });
});
