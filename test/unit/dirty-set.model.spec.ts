import { describe, expect, it } from 'vitest';
import { DirtySet } from '../../src/write-back/cache/dirty-set.js';
import type { FlushItem } from '../../src/write-back/model/types.js';
import { seededRandom as prng } from '../support/random.js';
import { ReferenceDirtySet } from '../support/reference-dirty-set.js';

const publicState = (d: DirtySet | ReferenceDirtySet, keys: readonly string[]) => ({
  size: d.size,
  inFlight: d.inFlightCount,
  queued: d.queuedCount,
  held: d.heldCount,
  takeable: d.takeableCount,
  holding: d.holding,
  byPriority: d.queuedByPriority(),
  oldest: d.oldestSince(),
  versions: [...d.snapshotVersions()],
  entries: keys.map((k) => {
    const e = d.get(k);
    return e && { json: e.json, version: e.version, rank: e.rank, since: e.since, inFlight: e.inFlight };
  }),
});

// The DirtySet keeps its queues and age order as intrusive linked lists; this drives it and the Set-based
// reference through the same random operations (writes at every priority, takes, completes, releases,
// takeKey, rewrites in flight, holding hot keys on and off, new generations) and requires the same answers after
// every step.
describe('DirtySet against the reference model', () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`same results on 3,000 random operations (seed ${seed})`, () => {
      const rnd = prng(seed);
      const dirty = new DirtySet();
      const model = new ReferenceDirtySet();
      const keys = Array.from({ length: 12 }, (_, i) => `k${i}`);
      const inFlight: FlushItem[] = [];
      let version = 0;
      let now = 1000;
      for (let step = 0; step < 3000; step++) {
        now += rnd(3);
        const op = rnd(11);
        if (op < 5) {
          const key = keys[rnd(keys.length)];
          const json = rnd(5) === 0 ? null : String(step);
          version++;
          const rank = rnd(3);
          // As WriteBackCache says it: whether the key had a clean copy (only new entries look at it).
          const wasClean = rnd(2) === 0;
          expect(dirty.writeEntry(dirty.get(key), key, json, version, rank, now, wasClean)).toBe(
            model.write(key, json, version, rank, now, wasClean),
          );
        } else if (op === 10) {
          if (rnd(3) === 0) {
            dirty.nextGeneration();
            model.nextGeneration();
          } else {
            const on = rnd(4) !== 0;
            dirty.setHolding(on);
            model.setHolding(on);
          }
        } else if (op === 5) {
          const max = 1 + rnd(5);
          const got = dirty.take(max);
          expect(got).toEqual(model.take(max));
          inFlight.push(...got);
        } else if (op === 6 || op === 7) {
          if (inFlight.length === 0) continue;
          const [item] = inFlight.splice(rnd(inFlight.length), 1);
          expect(dirty.complete(item)).toBe(model.complete(item));
        } else if (op === 8) {
          if (inFlight.length === 0) continue;
          const [item] = inFlight.splice(rnd(inFlight.length), 1);
          dirty.release(item);
          model.release(item);
        } else {
          const key = keys[rnd(keys.length)];
          const got = dirty.takeKey(key);
          expect(got).toEqual(model.takeKey(key));
          if (got) inFlight.push(got);
        }
        expect(publicState(dirty, keys)).toEqual(publicState(model, keys));
      }
    });
  }
});
