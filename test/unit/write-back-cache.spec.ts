import { afterEach, describe, expect, it, vi } from 'vitest';
import { PRIORITY_RANK } from '../../src/write-back/cache/dirty-set.js';
import type { StoredRow } from '../../src/write-back/model/types.js';
import { cacheWithDirtySet, flushAll } from '../support/cache-with-dirty-set.js';

const NORMAL = PRIORITY_RANK.normal;

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function makeCache(maxEntries = 100, maxDirtyEntries = 1000, rows: Record<string, StoredRow> = {}) {
  const loader = vi.fn(async (key: string): Promise<StoredRow | undefined> => rows[key]);
  return { ...cacheWithDirtySet(maxEntries, maxDirtyEntries, loader), loader };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('WriteBackCache', () => {
  describe('reads', () => {
    it('reads its own writes from memory before any flush (no load)', async () => {
      const { cache, loader, dirty } = makeCache();
      cache.write('a', '{"v":1}', NORMAL);
      expect(await cache.get('a')).toBe('{"v":1}');
      cache.write('a', '{"v":2}', NORMAL);
      expect(await cache.get('a')).toBe('{"v":2}');
      expect(loader).not.toHaveBeenCalled();
      expect(cache.counters).toMatchObject({ reads: 2, hits: 2, misses: 0, loads: 0, writes: 2, coalesced: 1 });
    });

    it('after delete, get is undefined without loading, even though Postgres has the row', async () => {
      const { cache, loader, dirty } = makeCache(100, 1000, { a: { json: '"db"', version: 1 } });
      cache.write('a', null, NORMAL);
      expect(await cache.get('a')).toBeUndefined();
      expect(loader).not.toHaveBeenCalled();
      // And once the delete committed, the key is not served from a stale clean copy.
      flushAll(cache, dirty);
      expect(cache.clean.peek('a')).toBeUndefined();
    });

    it('a delete of a clean key drops the clean copy', async () => {
      const { cache, loader, dirty } = makeCache(100, 1000, { a: { json: '"db"', version: 1 } });
      expect(await cache.get('a')).toBe('"db"');
      cache.write('a', null, NORMAL);
      expect(await cache.get('a')).toBeUndefined();
      expect(cache.clean.peek('a')).toBeUndefined();
      expect(loader).toHaveBeenCalledTimes(1);
    });

    it('loads a missing key once, caches it clean and serves it from memory after', async () => {
      const { cache, loader, dirty } = makeCache(100, 1000, { a: { json: '"db"', version: 7 } });
      expect(await cache.get('a')).toBe('"db"');
      expect(cache.clean.peek('a')).toEqual({ json: '"db"', version: 7 });
      expect(cache.dirty.has('a')).toBe(false);
      expect(await cache.get('a')).toBe('"db"');
      expect(loader).toHaveBeenCalledTimes(1);
      expect(cache.counters).toMatchObject({ reads: 2, hits: 1, misses: 1, loads: 1 });
    });

    it('a key absent from Postgres reads undefined, is not cached, and is loaded again next time', async () => {
      const { cache, loader, dirty } = makeCache();
      expect(await cache.get('nope')).toBeUndefined();
      expect(cache.clean.size).toBe(0);
      expect(await cache.get('nope')).toBeUndefined();
      expect(loader).toHaveBeenCalledTimes(2);
    });

    it('concurrent gets of one missing key share one load', async () => {
      const load = deferred<StoredRow | undefined>();
      const loader = vi.fn(() => load.promise);
      const { cache, dirty } = cacheWithDirtySet(100, 1000, loader);
      const reads = [cache.get('a'), cache.get('a'), cache.get('a')];
      expect(loader).toHaveBeenCalledTimes(1);
      load.resolve({ json: '"db"', version: 3 });
      expect(await Promise.all(reads)).toEqual(['"db"', '"db"', '"db"']);
      expect(cache.counters.loads).toBe(1);
      expect(cache.counters.misses).toBe(3);
      // A later miss (after eviction or not) starts a new load rather than reusing the finished one.
      cache.clean.delete('a');
      loader.mockResolvedValueOnce({ json: '"db2"', version: 4 });
      expect(await cache.get('a')).toBe('"db2"');
      expect(loader).toHaveBeenCalledTimes(2);
    });

    it('a failed load rejects every waiting get and the next get loads again', async () => {
      const load = deferred<StoredRow | undefined>();
      const loader = vi.fn().mockReturnValueOnce(load.promise).mockResolvedValueOnce({ json: '1', version: 1 });
      const { cache, dirty } = cacheWithDirtySet(100, 1000, loader);
      const first = cache.get('a');
      const second = cache.get('a');
      load.reject(new Error('connection lost'));
      await expect(first).rejects.toThrow('connection lost');
      await expect(second).rejects.toThrow('connection lost');
      expect(await cache.get('a')).toBe('1');
      expect(loader).toHaveBeenCalledTimes(2);
    });

    it('a write during a load wins: the get returns the new value and the stale row is not cached', async () => {
      const load = deferred<StoredRow | undefined>();
      const { cache, dirty } = cacheWithDirtySet(100, 1000, () => load.promise);
      const read = cache.get('a');
      cache.write('a', '"new"', NORMAL);
      load.resolve({ json: '"old"', version: 1 });
      expect(await read).toBe('"new"');
      expect(cache.clean.peek('a')).toBeUndefined();
      expect(await cache.get('a')).toBe('"new"');
      // Still the new value once it is flushed and clean.
      flushAll(cache, dirty);
      expect(cache.clean.peek('a')?.json).toBe('"new"');
      expect(await cache.get('a')).toBe('"new"');
    });

    it('a delete during a load wins: the get returns undefined', async () => {
      const load = deferred<StoredRow | undefined>();
      const { cache, dirty } = cacheWithDirtySet(100, 1000, () => load.promise);
      const read = cache.get('a');
      cache.write('a', null, NORMAL);
      load.resolve({ json: '"old"', version: 1 });
      expect(await read).toBeUndefined();
      expect(cache.clean.peek('a')).toBeUndefined();
    });

    it('a write that was flushed while the load ran still wins over the loaded row', async () => {
      const load = deferred<StoredRow | undefined>();
      const { cache, dirty } = cacheWithDirtySet(100, 1000, () => load.promise);
      const read = cache.get('a');
      cache.write('a', '"new"', NORMAL);
      flushAll(cache, dirty);
      load.resolve({ json: '"old"', version: 1 });
      expect(await read).toBe('"new"');
      expect(cache.clean.peek('a')?.json).toBe('"new"');
    });
  });

  describe('eviction', () => {
    it('never evicts dirty entries: 100 writes with maxEntries 10 all read back from memory', async () => {
      const { cache, loader, dirty } = makeCache(10, 1000);
      for (let i = 0; i < 100; i++) cache.write(`k${i}`, String(i), NORMAL);
      expect(cache.dirty.size).toBe(100);
      for (let i = 0; i < 100; i++) expect(await cache.get(`k${i}`)).toBe(String(i));
      expect(loader).not.toHaveBeenCalled();
    });

    it('a committed entry moves to clean and can then be evicted least-recently-used', async () => {
      const { cache, loader, dirty } = makeCache(10, 1000);
      for (let i = 0; i < 20; i++) cache.write(`k${i}`, String(i), NORMAL);
      flushAll(cache, dirty);
      expect(cache.dirty.size).toBe(0);
      expect(cache.clean.size).toBe(10);
      // The first ten committed were evicted; the last ten are served from memory.
      for (let i = 10; i < 20; i++) expect(await cache.get(`k${i}`)).toBe(String(i));
      expect(loader).not.toHaveBeenCalled();
      await cache.get('k0');
      expect(loader).toHaveBeenCalledWith('k0');
    });

    it('an entry rewritten during its flight stays dirty (not moved to clean) after the commit', async () => {
      const { cache, loader, dirty } = makeCache(10, 1000);
      cache.write('a', '1', NORMAL);
      const [item] = dirty.take(10);
      cache.write('a', '2', NORMAL);
      const clean = dirty.complete(item);
      expect(clean).toBe(false);
      cache.onCommitted(item, clean);
      expect(cache.clean.peek('a')).toBeUndefined();
      // Filling the clean cache cannot evict it.
      for (let i = 0; i < 50; i++) cache.write(`k${i}`, '0', NORMAL);
      for (const next of dirty.take(1000)) {
        if (next.key !== 'a') cache.onCommitted(next, dirty.complete(next));
      }
      expect(await cache.get('a')).toBe('2');
      expect(loader).not.toHaveBeenCalled();
    });
  });

  describe('versions', () => {
    it('a write gets a version above the clean copy, even one from a clock ahead of ours', async () => {
      const future = Date.now() * 1000 + 3_600_000_000;
      const { cache, dirty } = makeCache(100, 1000, { a: { json: '1', version: future } });
      await cache.get('a');
      const version = cache.write('a', '2', NORMAL);
      expect(version).toBeGreaterThan(future);
      expect(cache.write('a', '3', NORMAL)).toBeGreaterThan(version);
    });

    // write() reads the clean copy's version only while some clean entry may be above the clock's last version.
    it('a write gets a version above a committed replayed version from a clock ahead of ours, and above our own', () => {
      const { cache, dirty } = makeCache();
      const mine = cache.write('x', '1', NORMAL);
      flushAll(cache, dirty);
      expect(cache.write('x', '2', NORMAL)).toBeGreaterThan(mine);
      flushAll(cache, dirty);
      const future = Date.now() * 1000 + 3_600_000_000;
      expect(cache.requeue('a', '"replayed"', future, NORMAL)).toBe(true);
      flushAll(cache, dirty);
      expect(cache.clean.peek('a')?.version).toBe(future);
      expect(cache.clean.highestVersion).toBe(future);
      const next = cache.write('a', '"new"', NORMAL);
      expect(next).toBeGreaterThan(future);
      expect(cache.clean.peek('a')).toBeUndefined();
      flushAll(cache, dirty);
      // The clock is past every clean version again: writes to clean keys skip the lookup and still drop the copy.
      expect(cache.write('x', '3', NORMAL)).toBeGreaterThan(next);
      expect(cache.clean.peek('x')).toBeUndefined();
    });

    it('requeue re-queues an older write only when memory holds nothing newer', async () => {
      const { cache, dirty } = makeCache(100, 1000, { a: { json: '"db"', version: 100 } });
      await cache.get('a');
      expect(cache.requeue('a', '"replay"', 50, NORMAL)).toBe(false);
      expect(cache.requeue('a', '"replay"', 100, NORMAL)).toBe(false);
      expect(cache.dirty.has('a')).toBe(false);
      expect(await cache.get('a')).toBe('"db"');

      expect(cache.requeue('a', '"replay"', 150, NORMAL)).toBe(true);
      expect(cache.dirty.get('a')).toMatchObject({ json: '"replay"', version: 150 });
      expect(await cache.get('a')).toBe('"replay"');

      // Against a dirty entry too.
      const v = cache.write('b', '"live"', NORMAL);
      expect(cache.requeue('b', '"replay"', v - 1, NORMAL)).toBe(false);
      expect(await cache.get('b')).toBe('"live"');
    });

    // write() skips the clean cache for a key that is dirty (it cannot hold one) and drops the clean copy only
    // when there is one: this walks every path between dirty and clean and checks that one key is held once.
    it('a dirty key never has a clean copy, and each write is above every version memory held', async () => {
      const load = deferred<StoredRow | undefined>();
      const { cache, dirty } = cacheWithDirtySet(100, 1000, () => load.promise);
      const once = () => expect(cache.dirty.has('a') && cache.clean.peek('a') !== undefined).toBe(false);
      const future = Date.now() * 1000 + 3_600_000_000;
      const read = cache.get('a');
      load.resolve({ json: '"db"', version: future });
      expect(await read).toBe('"db"');
      expect(cache.clean.peek('a')?.version).toBe(future);
      const v1 = cache.write('a', '1', NORMAL);
      expect(v1).toBeGreaterThan(future);
      once();
      const v2 = cache.write('a', '2', NORMAL);
      expect(v2).toBeGreaterThan(v1);
      once();
      const [item] = dirty.take(10);
      const v3 = cache.write('a', '3', NORMAL); // during the flight
      expect(v3).toBeGreaterThan(v2);
      cache.onCommitted(item, dirty.complete(item));
      once();
      flushAll(cache, dirty);
      expect(cache.clean.peek('a')).toMatchObject({ json: '3', version: v3 });
      const v4 = cache.write('a', null, NORMAL);
      expect(v4).toBeGreaterThan(v3);
      once();
      expect(await cache.get('a')).toBeUndefined();
      flushAll(cache, dirty);
      expect(cache.clean.peek('a')).toBeUndefined();
      expect(cache.requeue('a', '"replay"', v4 + 1, NORMAL)).toBe(true);
      once();
      expect(cache.write('a', '5', NORMAL)).toBeGreaterThan(v4 + 1);
      expect(await cache.get('a')).toBe('5');
    });

    it('onDeadLettered drops the clean copy so reads fall back to Postgres', async () => {
      const { cache, loader, dirty } = makeCache(100, 1000, { a: { json: '"db"', version: 1 } });
      cache.write('a', '"bad"', NORMAL);
      const [item] = dirty.take(1);
      cache.onDeadLettered(item, dirty.complete(item));
      expect(cache.dirty.has('a')).toBe(false);
      expect(await cache.get('a')).toBe('"db"');
      expect(loader).toHaveBeenCalledTimes(1);
    });
  });

  describe('room under maxDirtyEntries', () => {
    it('hasRoomFor is false for a new key at the limit, true for a key already dirty', () => {
      const { cache, dirty } = makeCache(100, 2);
      cache.write('a', '1', NORMAL);
      expect(cache.hasRoomFor('b')).toBe(true);
      cache.write('b', '1', NORMAL);
      expect(cache.hasRoomFor('c')).toBe(false);
      expect(cache.hasRoomFor('a')).toBe(true);
      flushAll(cache, dirty);
      expect(cache.hasRoomFor('c')).toBe(true);
    });

    it('waitForRoom resolves false after its timeout when nothing is flushed', async () => {
      vi.useFakeTimers();
      const { cache, dirty } = makeCache(100, 1);
      cache.write('a', '1', NORMAL);
      let result: boolean | undefined;
      void cache.waitForRoom(500).then((r) => (result = r));
      await vi.advanceTimersByTimeAsync(499);
      expect(result).toBeUndefined();
      await vi.advanceTimersByTimeAsync(1);
      expect(result).toBe(false);
    });

    it('waitForRoom resolves true as soon as an entry leaves the dirty set', async () => {
      vi.useFakeTimers();
      const { cache, dirty } = makeCache(100, 1);
      cache.write('a', '1', NORMAL);
      let result: boolean | undefined;
      void cache.waitForRoom(500).then((r) => (result = r));
      await vi.advanceTimersByTimeAsync(100);
      // A commit that leaves the entry dirty (rewritten in flight) frees no room.
      const [item] = dirty.take(1);
      cache.write('a', '2', NORMAL);
      cache.onCommitted(item, dirty.complete(item));
      await vi.advanceTimersByTimeAsync(0);
      expect(result).toBeUndefined();
      flushAll(cache, dirty);
      await vi.advanceTimersByTimeAsync(0);
      expect(result).toBe(true);
      expect(cache.hasRoomFor('b')).toBe(true);
      expect(vi.getTimerCount()).toBe(0);
    });

    it('a dead-lettered entry frees room too', async () => {
      vi.useFakeTimers();
      const { cache, dirty } = makeCache(100, 1);
      cache.write('a', '1', NORMAL);
      const waiting = cache.waitForRoom(500);
      const [item] = dirty.take(1);
      cache.onDeadLettered(item, dirty.complete(item));
      expect(await waiting).toBe(true);
    });
  });
});
