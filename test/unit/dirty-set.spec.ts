import { describe, expect, it } from 'vitest';
import { DirtySet, PRIORITY_RANK } from '../../src/write-back/cache/dirty-set.js';
import type { FlushItem } from '../../src/write-back/model/types.js';

const HIGH = PRIORITY_RANK.high;
const NORMAL = PRIORITY_RANK.normal;
const LOW = PRIORITY_RANK.low;

const keysOf = (items: readonly FlushItem[]) => items.map((item) => item.key);

describe('DirtySet', () => {
  describe('write / coalescing', () => {
    it('a first write is not coalesced and creates one queued entry', () => {
      const dirty = new DirtySet();
      expect(dirty.write('a', '1', 1, NORMAL, 1000)).toBe(false);
      expect(dirty.size).toBe(1);
      expect(dirty.queuedCount).toBe(1);
      expect(dirty.get('a')).toMatchObject({ json: '1', version: 1, rank: NORMAL, since: 1000, inFlight: false });
    });

    it('a write to a queued key coalesces: returns true, one entry, latest value and version, first since kept', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 1000);
      expect(dirty.write('a', '2', 2, NORMAL, 1005)).toBe(true);
      expect(dirty.write('a', null, 3, NORMAL, 1010)).toBe(true);
      expect(dirty.size).toBe(1);
      expect(dirty.queuedCount).toBe(1);
      expect(dirty.get('a')).toMatchObject({ json: null, version: 3, since: 1000 });
      // One row write: take() yields the key once with the latest snapshot.
      expect(dirty.take(10)).toEqual([{ key: 'a', json: null, version: 3, rank: NORMAL }]);
      expect(dirty.take(10)).toEqual([]);
    });

    it('a write to an in-flight key is not coalesced (another row write will follow)', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 1000);
      dirty.take(1);
      expect(dirty.write('a', '2', 2, NORMAL, 1001)).toBe(false);
      expect(dirty.size).toBe(1);
      expect(dirty.queuedCount).toBe(0);
    });
  });

  describe('take()', () => {
    it('takes high before normal before low, first-written first within a priority', () => {
      const dirty = new DirtySet();
      dirty.write('low1', '0', 1, LOW, 1);
      dirty.write('n1', '0', 2, NORMAL, 2);
      dirty.write('h1', '0', 3, HIGH, 3);
      dirty.write('low2', '0', 4, LOW, 4);
      dirty.write('n2', '0', 5, NORMAL, 5);
      dirty.write('h2', '0', 6, HIGH, 6);
      expect(keysOf(dirty.take(100))).toEqual(['h1', 'h2', 'n1', 'n2', 'low1', 'low2']);
    });

    it('snapshots json, version and rank and marks the entries in flight', () => {
      const dirty = new DirtySet();
      dirty.write('a', '"x"', 7, HIGH, 1);
      const [item] = dirty.take(1);
      expect(item).toEqual({ key: 'a', json: '"x"', version: 7, rank: HIGH });
      expect(dirty.get('a')!.inFlight).toBe(true);
      expect(dirty.inFlightCount).toBe(1);
      expect(dirty.queuedCount).toBe(0);
      expect(dirty.size).toBe(1);
    });

    it('respects max and continues where it stopped', () => {
      const dirty = new DirtySet();
      for (let i = 0; i < 10; i++) dirty.write(`k${i}`, '0', i + 1, NORMAL, i);
      expect(keysOf(dirty.take(3))).toEqual(['k0', 'k1', 'k2']);
      expect(keysOf(dirty.take(4))).toEqual(['k3', 'k4', 'k5', 'k6']);
      expect(dirty.take(0)).toEqual([]);
      expect(keysOf(dirty.take(100))).toEqual(['k7', 'k8', 'k9']);
      expect(dirty.inFlightCount).toBe(10);
    });

    it('max applies across priorities', () => {
      const dirty = new DirtySet();
      dirty.write('h', '0', 1, HIGH, 1);
      dirty.write('n', '0', 2, NORMAL, 2);
      dirty.write('l', '0', 3, LOW, 3);
      expect(keysOf(dirty.take(2))).toEqual(['h', 'n']);
      expect(keysOf(dirty.take(2))).toEqual(['l']);
    });

    it('never holds one key twice in a batch, nor a key that is already in flight', () => {
      const dirty = new DirtySet();
      for (let round = 0; round < 5; round++) {
        for (let i = 0; i < 20; i++) dirty.write(`k${i % 7}`, String(round * 100 + i), round * 100 + i + 1, i % 3, i);
      }
      const batch = dirty.take(100);
      expect(batch).toHaveLength(7);
      expect(new Set(keysOf(batch)).size).toBe(7);
      // Rewrites of in-flight keys are not queued a second time.
      for (let i = 0; i < 7; i++) dirty.write(`k${i}`, 'new', 10_000 + i, NORMAL, 50);
      expect(dirty.take(100)).toEqual([]);
    });

    it('takes retries (released items) before fresh writes of the same priority', () => {
      const dirty = new DirtySet();
      dirty.write('a', '0', 1, NORMAL, 1);
      dirty.write('b', '0', 2, NORMAL, 2);
      const batch = dirty.take(2);
      dirty.write('c', '0', 3, NORMAL, 3);
      dirty.write('d', '0', 4, NORMAL, 4);
      for (const item of batch) dirty.release(item);
      expect(keysOf(dirty.take(100))).toEqual(['a', 'b', 'c', 'd']);
    });

    it('a fresh high write still goes before a normal retry', () => {
      const dirty = new DirtySet();
      dirty.write('a', '0', 1, NORMAL, 1);
      const [item] = dirty.take(1);
      dirty.release(item);
      dirty.write('h', '0', 2, HIGH, 2);
      expect(keysOf(dirty.take(100))).toEqual(['h', 'a']);
    });
  });

  describe('complete()', () => {
    it('removes the entry when the flushed version is still the latest', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 1000);
      const [item] = dirty.take(1);
      expect(dirty.complete(item)).toBe(true);
      expect(dirty.has('a')).toBe(false);
      expect(dirty.size).toBe(0);
      expect(dirty.inFlightCount).toBe(0);
    });

    it('keeps the entry dirty when a write arrived during the flight, re-queued with since = time of that write', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 1000);
      const [item] = dirty.take(1);
      dirty.write('a', '2', 2, NORMAL, 1500);
      dirty.write('a', '3', 3, NORMAL, 1600);
      expect(dirty.complete(item)).toBe(false);
      const entry = dirty.get('a')!;
      expect(entry).toMatchObject({ json: '3', version: 3, since: 1500, inFlight: false });
      expect(dirty.inFlightCount).toBe(0);
      expect(dirty.queuedCount).toBe(1);
      expect(dirty.oldestSince()).toBe(1500);
      // The newer version is flushed next.
      const [next] = dirty.take(10);
      expect(next).toEqual({ key: 'a', json: '3', version: 3, rank: NORMAL });
      expect(dirty.complete(next)).toBe(true);
      expect(dirty.size).toBe(0);
    });

    it('a delete during the flight is what stays dirty', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 1000);
      const [item] = dirty.take(1);
      dirty.write('a', null, 2, NORMAL, 1001);
      expect(dirty.complete(item)).toBe(false);
      expect(dirty.take(1)).toEqual([{ key: 'a', json: null, version: 2, rank: NORMAL }]);
    });

    it('after the flight, the priority is that of the writes made during it', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, HIGH, 1);
      const [item] = dirty.take(1);
      dirty.write('a', '2', 2, LOW, 2);
      dirty.complete(item);
      expect(dirty.get('a')!.rank).toBe(LOW);
      expect(dirty.queuedByPriority()).toEqual({ high: 0, normal: 0, low: 1 });

      dirty.write('b', '1', 3, LOW, 3);
      const items = dirty.take(10);
      dirty.write('b', '2', 4, HIGH, 4);
      for (const i of items) dirty.complete(i);
      expect(dirty.get('b')!.rank).toBe(HIGH);
      expect(keysOf(dirty.take(10))).toEqual(['b']);
    });
  });

  describe('release()', () => {
    it('re-queues the entry, keeping the since of its oldest unflushed write', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 1000);
      const [item] = dirty.take(1);
      dirty.write('a', '2', 2, HIGH, 2000);
      dirty.release(item);
      const entry = dirty.get('a')!;
      expect(entry).toMatchObject({ json: '2', version: 2, since: 1000, inFlight: false, rank: HIGH });
      expect(dirty.inFlightCount).toBe(0);
      expect(dirty.queuedCount).toBe(1);
      expect(dirty.take(10)).toEqual([{ key: 'a', json: '2', version: 2, rank: HIGH }]);
    });

    it('is a no-op for a key that is no longer dirty', () => {
      const dirty = new DirtySet();
      dirty.release({ key: 'gone', json: '1', version: 1, rank: NORMAL });
      expect(dirty.size).toBe(0);
      expect(dirty.take(10)).toEqual([]);
    });
  });

  describe('recordRejection()', () => {
    it('counts the attempts of the version in flight and keeps the time of the first', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 1000);
      const [item] = dirty.take(1);
      expect(dirty.recordRejection(item, 5000)).toEqual({ attempts: 1, firstFailedAt: 5000 });
      expect(dirty.recordRejection(item, 6000)).toEqual({ attempts: 2, firstFailedAt: 5000 });
      expect(dirty.get('a')).toMatchObject({ attempts: 2, firstFailedAt: 5000, inFlight: true });
    });

    it('releases an item a newer write superseded, for the newer value to be written instead', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 1000);
      const [item] = dirty.take(1);
      dirty.write('a', '2', 2, NORMAL, 2000);
      expect(dirty.recordRejection(item, 5000)).toBeUndefined();
      expect(dirty.get('a')).toMatchObject({ attempts: 0, inFlight: false });
      expect(dirty.take(10)).toEqual([{ key: 'a', json: '2', version: 2, rank: NORMAL }]);
    });
  });

  describe('priority upgrade of a queued key', () => {
    it('moves a queued normal key to the high queue', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 1);
      dirty.write('b', '1', 2, NORMAL, 2);
      dirty.write('h', '1', 3, HIGH, 3);
      expect(dirty.write('b', '2', 4, HIGH, 4)).toBe(true);
      expect(dirty.get('b')!.rank).toBe(HIGH);
      expect(dirty.queuedByPriority()).toEqual({ high: 2, normal: 1, low: 0 });
      expect(keysOf(dirty.take(10))).toEqual(['h', 'b', 'a']);
    });

    it('a lower-priority rewrite does not downgrade a queued key', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, HIGH, 1);
      dirty.write('n', '1', 2, NORMAL, 2);
      dirty.write('a', '2', 3, LOW, 3);
      expect(dirty.get('a')!.rank).toBe(HIGH);
      expect(keysOf(dirty.take(10))).toEqual(['a', 'n']);
    });

    it('an upgraded retry stays a retry (before fresh high writes)', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 1);
      const [item] = dirty.take(1);
      dirty.release(item);
      dirty.write('h', '1', 2, HIGH, 2);
      dirty.write('a', '2', 3, HIGH, 3);
      expect(keysOf(dirty.take(10))).toEqual(['a', 'h']);
      expect(dirty.take(10)).toEqual([]);
    });
  });

  describe('takeKey()', () => {
    it('takes one queued key out of the queue and marks it in flight', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 1);
      dirty.write('b', '1', 2, NORMAL, 2);
      expect(dirty.takeKey('b')).toEqual({ key: 'b', json: '1', version: 2, rank: NORMAL });
      expect(dirty.inFlightCount).toBe(1);
      expect(keysOf(dirty.take(10))).toEqual(['a']);
    });

    it('returns undefined for a key that is not dirty or already in flight', () => {
      const dirty = new DirtySet();
      expect(dirty.takeKey('nope')).toBeUndefined();
      dirty.write('a', '1', 1, NORMAL, 1);
      dirty.take(1);
      expect(dirty.takeKey('a')).toBeUndefined();
      expect(dirty.inFlightCount).toBe(1);
    });

    it('takes a key from the retry queue too', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, LOW, 1);
      dirty.release(dirty.take(1)[0]);
      const item = dirty.takeKey('a')!;
      expect(item.key).toBe('a');
      expect(dirty.take(10)).toEqual([]);
      expect(dirty.complete(item)).toBe(true);
      expect(dirty.size).toBe(0);
    });
  });

  describe('oldestQueuedSince()', () => {
    it('is the since of the longest-waiting queued entry across priorities and retries; in-flight entries do not count', () => {
      const dirty = new DirtySet();
      expect(dirty.oldestQueuedSince()).toBeUndefined();
      dirty.write('b', '1', 1, LOW, 50);
      dirty.write('a', '1', 2, NORMAL, 100);
      dirty.write('c', '1', 3, HIGH, 200);
      expect(dirty.oldestQueuedSince()).toBe(50);
      const taken = dirty.take(3); // c, a, b: all in flight
      expect(dirty.oldestQueuedSince()).toBeUndefined();
      expect(dirty.oldestSince()).toBe(50);
      dirty.release(taken[1]); // a failed: queued for retry
      dirty.write('d', '1', 4, NORMAL, 300);
      expect(dirty.oldestQueuedSince()).toBe(100);
    });
  });

  describe('oldestSince()', () => {
    it('is undefined when nothing is dirty', () => {
      expect(new DirtySet().oldestSince()).toBeUndefined();
    });

    it('is the since of the oldest write across priorities, queues and in-flight entries', () => {
      const dirty = new DirtySet();
      dirty.write('low', '1', 1, LOW, 100);
      dirty.write('high', '1', 2, HIGH, 200);
      expect(dirty.oldestSince()).toBe(100);
      dirty.take(10); // both in flight
      expect(dirty.oldestSince()).toBe(100);
      dirty.write('n', '1', 3, NORMAL, 300);
      expect(dirty.oldestSince()).toBe(100);
    });

    it('moves forward as entries are completed', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 100);
      dirty.write('b', '1', 2, NORMAL, 200);
      const [a] = dirty.take(1);
      dirty.complete(a);
      expect(dirty.oldestSince()).toBe(200);
      dirty.complete(dirty.take(1)[0]);
      expect(dirty.oldestSince()).toBeUndefined();
    });

    // BUG (reported): oldestSince() only looks at the first key of each queue, but a queue is not ordered by
    // since: a rank upgrade appends an old entry behind newer ones, so the flush lag is under-reported.
    it('counts an old entry that a priority upgrade moved behind newer ones', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 100);
      dirty.write('h', '1', 2, HIGH, 200);
      dirty.write('a', '2', 3, HIGH, 300); // a moves to the end of the high queue, since stays 100
      expect(dirty.get('a')!.since).toBe(100);
      expect(dirty.oldestSince()).toBe(100);
    });

    // BUG (reported): same cause: complete() re-queues an entry at the end of the fresh queue with since = the
    // time of the write made during the flight, which can be older than entries queued meanwhile.
    it('counts an entry re-queued by complete() behind newer fresh writes', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 100);
      const [item] = dirty.take(1);
      dirty.write('a', '2', 2, NORMAL, 150); // during the flight
      dirty.write('b', '1', 3, NORMAL, 200);
      dirty.complete(item); // a re-queued after b, since 150
      expect(dirty.oldestSince()).toBe(150);
    });

    // BUG (reported): same cause: retries are queued in release order, not since order.
    it('counts released entries whatever order they were released in', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 100);
      dirty.write('b', '1', 2, NORMAL, 200);
      const [a] = dirty.take(1);
      const [b] = dirty.take(1);
      dirty.release(b);
      dirty.release(a);
      expect(dirty.oldestSince()).toBe(100);
    });
  });

  describe('holding (hot keys)', () => {
    /** A key taken (and so flushed) in this generation, then written again while in flight: `complete` holds it. */
    function rewrittenInFlight(dirty: DirtySet, key: string, now: number): void {
      dirty.write(key, '"v1"', 1, NORMAL, now);
      const [item] = dirty.take(1);
      dirty.write(key, '"v2"', 2, NORMAL, now + 1);
      expect(dirty.complete(item)).toBe(false);
    }

    it('is off by default: a key re-written in flight is queued again at once', () => {
      const dirty = new DirtySet();
      rewrittenInFlight(dirty, 'a', 1000);
      expect(dirty.holding).toBe(false);
      expect(dirty.heldCount).toBe(0);
      expect(keysOf(dirty.take(10))).toEqual(['a']);
    });

    it('holds a key re-written while in flight until the next generation: not takeable, still queued and dirty', () => {
      const dirty = new DirtySet();
      dirty.setHolding(true);
      rewrittenInFlight(dirty, 'a', 1000);
      expect(dirty.heldCount).toBe(1);
      expect(dirty.queuedCount).toBe(1);
      expect(dirty.takeableCount).toBe(0);
      expect(dirty.queuedByPriority()).toEqual({ high: 0, normal: 1, low: 0 });
      expect(dirty.oldestQueuedSince()).toBeUndefined();
      expect(dirty.take(10)).toEqual([]);
      expect(dirty.snapshotVersions()).toEqual(new Map([['a', 2]]));
      // More writes to the held key coalesce into it.
      expect(dirty.write('a', '"v3"', 3, NORMAL, 1002)).toBe(true);
      expect(dirty.heldCount).toBe(1);
      dirty.nextGeneration();
      expect(dirty.heldCount).toBe(0);
      expect(dirty.take(10)).toEqual([{ key: 'a', json: '"v3"', version: 3, rank: NORMAL }]);
    });

    it('a new generation puts held keys in front of the fresh writes of their priority', () => {
      const dirty = new DirtySet();
      dirty.setHolding(true);
      rewrittenInFlight(dirty, 'hot1', 1000);
      rewrittenInFlight(dirty, 'hot2', 1010);
      dirty.write('fresh', '1', 10, NORMAL, 1020);
      expect(keysOf(dirty.take(10))).toEqual(['fresh']);
      dirty.write('fresh2', '1', 11, NORMAL, 1030);
      dirty.nextGeneration();
      expect(keysOf(dirty.take(10))).toEqual(['hot1', 'hot2', 'fresh2']);
    });

    it('holds a new entry of a key taken in this generation only when the caller says it had a clean copy', () => {
      const dirty = new DirtySet();
      dirty.setHolding(true);
      dirty.write('a', '1', 1, NORMAL, 1000);
      dirty.write('b', '1', 2, NORMAL, 1000);
      for (const item of dirty.take(10)) expect(dirty.complete(item)).toBe(true);
      // 'a' committed clean and is written again: held. 'c' was never taken: not held, whatever the caller says.
      dirty.writeEntry(undefined, 'a', '2', 3, NORMAL, 1001, true);
      dirty.writeEntry(undefined, 'c', '2', 4, NORMAL, 1001, true);
      // Without a clean copy (evicted, or superseded) the dirty set does not look: not held.
      dirty.writeEntry(undefined, 'b', '2', 5, NORMAL, 1001, false);
      expect(dirty.heldCount).toBe(1);
      expect(keysOf(dirty.take(10))).toEqual(['c', 'b']);
      dirty.nextGeneration();
      expect(keysOf(dirty.take(10))).toEqual(['a']);
    });

    it('never holds a high write, and a held key written as high leaves the hold', () => {
      const dirty = new DirtySet();
      dirty.setHolding(true);
      dirty.write('h', '1', 1, HIGH, 1000);
      const [item] = dirty.take(1);
      dirty.write('h', '2', 2, HIGH, 1001);
      dirty.complete(item);
      expect(dirty.heldCount).toBe(0);
      expect(keysOf(dirty.take(10))).toEqual(['h']);

      rewrittenInFlight(dirty, 'a', 1002);
      expect(dirty.heldCount).toBe(1);
      dirty.write('a', '3', 3, HIGH, 1003);
      expect(dirty.heldCount).toBe(0);
      expect(dirty.take(10)).toEqual([{ key: 'a', json: '3', version: 3, rank: HIGH }]);
    });

    it('a held low key upgraded to normal stays held, at its new priority', () => {
      const dirty = new DirtySet();
      dirty.setHolding(true);
      dirty.write('a', '1', 1, LOW, 1000);
      const [item] = dirty.take(1);
      dirty.write('a', '2', 2, LOW, 1001);
      dirty.complete(item);
      dirty.write('a', '3', 3, NORMAL, 1002);
      expect(dirty.heldCount).toBe(1);
      expect(dirty.queuedByPriority()).toEqual({ high: 0, normal: 1, low: 0 });
      dirty.nextGeneration();
      expect(dirty.take(10)).toEqual([{ key: 'a', json: '3', version: 3, rank: NORMAL }]);
    });

    it('setHolding(false) queues held keys again and forgets which keys were taken', () => {
      const dirty = new DirtySet();
      dirty.setHolding(true);
      rewrittenInFlight(dirty, 'a', 1000);
      dirty.setHolding(false);
      expect(dirty.heldCount).toBe(0);
      expect(dirty.takeableCount).toBe(1);
      const [item] = dirty.take(1);
      dirty.write('a', '"v3"', 3, NORMAL, 1005);
      dirty.setHolding(true);
      // Taken while holding was off: not counted as taken in this generation.
      dirty.complete(item);
      expect(dirty.heldCount).toBe(0);
    });

    it('takeKey (a write-through) takes a held key out of the hold queue', () => {
      const dirty = new DirtySet();
      dirty.setHolding(true);
      rewrittenInFlight(dirty, 'a', 1000);
      const item = dirty.takeKey('a')!;
      expect(dirty.heldCount).toBe(0);
      expect(dirty.complete(item)).toBe(true);
      expect(dirty.size).toBe(0);
      expect(dirty.queuedCount).toBe(0);
    });
  });

  describe('snapshotVersions() / queuedByPriority() / inFlightCount', () => {
    it('snapshotVersions has the latest version of every dirty key, queued or in flight, and is a copy', () => {
      const dirty = new DirtySet();
      dirty.write('a', '1', 1, NORMAL, 1);
      dirty.write('b', '1', 2, NORMAL, 2);
      dirty.take(1); // a in flight
      dirty.write('a', '2', 5, NORMAL, 3);
      dirty.write('c', null, 6, LOW, 4);
      const snapshot = dirty.snapshotVersions();
      expect([...snapshot]).toEqual([
        ['a', 5],
        ['b', 2],
        ['c', 6],
      ]);
      dirty.write('b', '2', 9, NORMAL, 5);
      expect(snapshot.get('b')).toBe(2);
    });

    it('queuedByPriority counts queued (not in-flight) entries per priority, retries included', () => {
      const dirty = new DirtySet();
      dirty.write('h1', '1', 1, HIGH, 1);
      dirty.write('n1', '1', 2, NORMAL, 2);
      dirty.write('n2', '1', 3, NORMAL, 3);
      dirty.write('l1', '1', 4, LOW, 4);
      expect(dirty.queuedByPriority()).toEqual({ high: 1, normal: 2, low: 1 });
      const [h1, n1] = dirty.take(2);
      expect(dirty.queuedByPriority()).toEqual({ high: 0, normal: 1, low: 1 });
      expect(dirty.inFlightCount).toBe(2);
      dirty.release(n1);
      expect(dirty.queuedByPriority()).toEqual({ high: 0, normal: 2, low: 1 });
      expect(dirty.inFlightCount).toBe(1);
      dirty.complete(h1);
      expect(dirty.inFlightCount).toBe(0);
      expect(dirty.size).toBe(3);
    });
  });
});

describe('take() bounded by characters', () => {
  it('stops a batch once the values hold maxChars characters, but always takes one entry', () => {
    const dirty = new DirtySet();
    for (let i = 0; i < 10; i++) dirty.write(`k${i}`, 'x'.repeat(98), i + 1, 1, i);
    const first = dirty.take(100, 250);
    expect(first.map((item) => item.key)).toEqual(['k0', 'k1', 'k2']);
    expect(dirty.take(100, 1).map((item) => item.key)).toEqual(['k3']);
    expect(dirty.take(100).length).toBe(6);
  });
});
