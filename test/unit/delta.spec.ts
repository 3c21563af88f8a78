import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import {
  applyDelta,
  applyMergePatch,
  composeDelta,
  composePatches,
  incrementDelta,
  mergeDelta,
  type Delta,
} from '../../src/write-back/model/delta.js';
import { PRIORITY_RANK } from '../../src/write-back/cache/dirty-set.js';
import { WriteBackCache } from '../../src/write-back/cache/write-back-cache.js';
import { parseWalDeltaState, walDeltaState } from '../../src/write-back/cache/wal-delta-state.js';
import { WriteBackInvalidDeltaError } from '../../src/write-back/write-back.errors.js';
import type { StoredRow } from '../../src/write-back/model/types.js';
import { cacheWithDirtySet } from '../support/cache-with-dirty-set.js';

const NORMAL = PRIORITY_RANK.normal;
const serialize = (value: unknown) => JSON.stringify(value);

describe('RFC 7396 merge patch', () => {
  it('applies the examples of the RFC', () => {
    // RFC 7396 appendix A, a few of the test cases.
    expect(applyMergePatch({ a: 'b' }, { a: 'c' })).toEqual({ a: 'c' });
    expect(applyMergePatch({ a: 'b' }, { b: 'c' })).toEqual({ a: 'b', b: 'c' });
    expect(applyMergePatch({ a: 'b' }, { a: null })).toEqual({});
    expect(applyMergePatch({ a: ['b'] }, { a: 'c' })).toEqual({ a: 'c' });
    expect(applyMergePatch({ a: { b: 'c' } }, { a: { b: 'd', c: null } })).toEqual({ a: { b: 'd' } });
    expect(applyMergePatch(['a', 'b'], { a: 'b' })).toEqual({ a: 'b' });
    expect(applyMergePatch({ e: null }, { a: 1 })).toEqual({ e: null, a: 1 });
    expect(applyMergePatch({}, { a: { bb: { ccc: null } } })).toEqual({ a: { bb: {} } });
  });

  it('composes two patches into one only when one can say both', () => {
    expect(composePatches({ a: { x: 1 } }, { a: { y: 2 }, b: null })).toEqual({ a: { x: 1, y: 2 }, b: null });
    // An object merged into a field the first patch removed must replace it: not one patch.
    expect(composePatches({ a: null }, { a: { y: 2 } })).toBeUndefined();
    expect(composePatches({ a: 5 }, { a: { y: 2 } })).toBeUndefined();
  });
});

/** JSON values the deltas act on, and deltas that may or may not apply to them. */
const field = fc.constantFrom('a', 'b', 'c');
const leaf = fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.string({ maxLength: 3 }), fc.constant(null));
const patchArb: fc.Arbitrary<Record<string, unknown>> = fc.letrec((tie) => ({
  patch: fc.dictionary(field, fc.oneof({ depthSize: 'small' }, leaf, tie('patch')), { maxKeys: 3 }),
})).patch as fc.Arbitrary<Record<string, unknown>>;
const deltaArb: fc.Arbitrary<Delta> = fc.oneof(
  fc.integer({ min: -1000, max: 1000 }).map((n) => ({ inc: n })),
  fc.dictionary(field, fc.integer({ min: -1000, max: 1000 }), { minKeys: 1, maxKeys: 3 }).map((inc) => ({ inc })),
  patchArb.map((patch) => ({ patches: [patch] })),
);
const valueArb = fc.oneof(fc.constant(undefined), fc.integer({ min: -1000, max: 1000 }), patchArb.map((p) => applyMergePatch({}, p)));

const attempt = (work: () => unknown): { ok: true; value: unknown } | { ok: false } => {
  try {
    return { ok: true, value: work() };
  } catch (error) {
    if (error instanceof WriteBackInvalidDeltaError) return { ok: false };
    throw error;
  }
};

describe('composing deltas', () => {
  it('a composed delta does what the deltas do one after the other, whenever they apply (property)', () => {
    fc.assert(
      fc.property(valueArb, fc.array(deltaArb, { minLength: 1, maxLength: 6 }), (value, deltas) => {
        let composed: Delta | undefined;
        for (const delta of deltas) {
          const next = attempt(() => composeDelta('k', composed, delta));
          if (!next.ok) return; // refused at the call: nothing to compare
          composed = next.value as Delta;
        }
        let sequential: unknown = value;
        for (const delta of deltas) {
          const step = attempt(() => applyDelta('k', sequential, delta));
          // A field increment of a non-object followed by a patch fails one by one, while the composed delta
          // applies the patch first (increments commute with patches of other fields): it may succeed instead of
          // being dead-lettered. Only sequences that apply are compared.
          if (!step.ok) return;
          sequential = step.value;
        }
        const once = attempt(() => applyDelta('k', value, composed!));
        expect(once).toEqual({ ok: true, value: sequential });
      }),
      { numRuns: 2000 },
    );
  });

  it('sums increments, keeps patches in order, drops increments a later patch overwrites', () => {
    expect(composeDelta('k', { inc: 2 }, { inc: 3 })).toEqual({ inc: 5 });
    expect(composeDelta('k', { inc: { a: 1 } }, { inc: { a: 2, b: 1 } })).toEqual({ inc: { a: 3, b: 1 } });
    expect(composeDelta('k', { inc: { a: 1, b: 1 } }, { patches: [{ a: 10 }] })).toEqual({ patches: [{ a: 10 }], inc: { b: 1 } });
    expect(composeDelta('k', { patches: [{ a: null }] }, { patches: [{ a: { x: 1 } }] })).toEqual({
      patches: [{ a: null }, { a: { x: 1 } }],
    });
  });

  it('refuses what cannot apply to one value, and sums past 2^53', () => {
    expect(() => composeDelta('k', { inc: 1 }, { inc: { a: 1 } })).toThrow(WriteBackInvalidDeltaError);
    expect(() => composeDelta('k', { inc: 1 }, { patches: [{ a: 1 }] })).toThrow(WriteBackInvalidDeltaError);
    expect(() => composeDelta('k', { patches: [{ a: 1 }] }, { inc: 1 })).toThrow(WriteBackInvalidDeltaError);
    expect(() => composeDelta('k', { inc: Number.MAX_SAFE_INTEGER }, { inc: 1 })).toThrow(/exact integer range/);
    expect(() => applyDelta('k', 'text', { inc: 1 })).toThrow(/needs a number, the value is a string/);
    expect(() => applyDelta('k', { a: [] }, { inc: { a: 1 } })).toThrow(/field "a" is an array/);
    expect(() => incrementDelta('k', 1.5)).toThrow(/integer/);
    expect(() => incrementDelta('k', { __proto__: 1 } as never)).toThrow(WriteBackInvalidDeltaError);
    expect(() => mergeDelta('k', null)).toThrow(/JSON object/);
  });
});

function makeCache(rows: Record<string, StoredRow> = {}) {
  const loader = vi.fn(async (key: string): Promise<StoredRow | undefined> => rows[key]);
  return { ...cacheWithDirtySet(100, 1000, loader), loader };
}

describe('deltas in the cache', () => {
  it('every order of set / increment / merge / delete reads as applying them in turn', async () => {
    const ops = ['set', 'inc', 'merge', 'delete'] as const;
    for (const a of ops) {
      for (const b of ops) {
        for (const c of ops) {
          const { cache, dirty } = makeCache({ k: { json: '{"n":1,"s":"x"}', version: 1 } });
          let expected: unknown = { n: 1, s: 'x' };
          for (const op of [a, b, c]) {
            if (op === 'set') {
              cache.write('k', '{"n":10}', NORMAL);
              expected = { n: 10 };
            } else if (op === 'delete') {
              cache.write('k', null, NORMAL);
              expected = undefined;
            } else {
              const delta: Delta = op === 'inc' ? { inc: { n: 2 } } : { patches: [{ s: 'y' }] };
              cache.writeDelta('k', delta, NORMAL, serialize);
              expected = applyDelta('k', expected, delta);
            }
          }
          const json = await cache.get('k');
          expect(json === undefined ? undefined : JSON.parse(json), `${a}, ${b}, ${c}`).toEqual(expected);
        }
      }
    }
  });

  it('a delta flight whose outcome is unknown is retried as it was; later deltas gather apart', () => {
    const { cache, dirty } = makeCache();
    cache.writeDelta('k', { inc: 1 }, NORMAL, serialize);
    cache.writeDelta('k', { inc: 2 }, NORMAL, serialize);
    const [first] = dirty.take(10);
    expect(first.delta).toEqual({ inc: 3 });
    cache.writeDelta('k', { inc: 10 }, NORMAL, serialize);
    dirty.release(first); // transient failure: did it commit? The ledger will say.
    const [retry] = dirty.take(10);
    expect(retry).toBe(first);
    cache.onCommitted(retry, dirty.complete(retry));
    const [next] = dirty.take(10);
    expect(next.delta).toEqual({ inc: 10 });
    expect(next.version).toBeGreaterThan(first.version);
    cache.onCommitted(next, dirty.complete(next));
    expect(cache.dirty.size).toBe(0);
  });

  it('a set while a delta is in flight replaces the deltas; the flight is not retried', () => {
    const { cache, dirty } = makeCache();
    cache.writeDelta('k', { inc: 1 }, NORMAL, serialize);
    const [flight] = dirty.take(10);
    cache.write('k', '5', NORMAL);
    dirty.release(flight);
    const [next] = dirty.take(10);
    expect(next).toMatchObject({ json: '5' });
    expect(next.delta).toBeUndefined();
  });

  it('the WAL state of a key holds the flight with its version and the pending deltas', () => {
    const { cache, dirty } = makeCache();
    cache.writeDelta('k', { inc: { a: 1 } }, NORMAL, serialize);
    const [flight] = dirty.take(10);
    cache.writeDelta('k', { patches: [{ b: 'x' }] }, NORMAL, serialize);
    const state = parseWalDeltaState(walDeltaState(cache.dirty.get('k')!));
    expect(state).toEqual({ flight: { version: flight.version, delta: { inc: { a: 1 } } }, pending: { patches: [{ b: 'x' }] } });
    // Restored after a crash: the flight is retried first, at its own version, then the rest.
    const { cache: restored, dirty: restoredDirty } = makeCache();
    restored.requeueDelta('k', state.flight, state.pending, cache.dirty.get('k')!.version, NORMAL);
    const [again] = restoredDirty.take(10);
    expect(again).toMatchObject({ version: flight.version, delta: { inc: { a: 1 } } });
    restored.onCommitted(again, restoredDirty.complete(again));
    const [rest] = restoredDirty.take(10);
    expect(rest).toMatchObject({ version: cache.dirty.get('k')!.version, delta: { patches: [{ b: 'x' }] } });
  });

  it('a miss whose load was overtaken by a write, then an increment, reads the value with the increment', async () => {
    let answer!: (row: StoredRow | undefined) => void;
    const { cache, dirty } = cacheWithDirtySet(100, 1000, () => new Promise<StoredRow | undefined>((resolve) => (answer = resolve)));
    const read = cache.get('k');
    cache.write('k', '1', NORMAL); // the load in flight is now stale
    for (const item of dirty.take(10)) cache.onCommitted(item, dirty.complete(item));
    cache.writeDelta('k', { inc: 2 }, NORMAL, serialize);
    answer({ json: '0', version: 1 });
    expect(await read).toBe('3');
  });
});
