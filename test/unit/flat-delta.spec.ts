import { describe, expect, it } from 'vitest';
import {
  addDecimal,
  applyDelta,
  composeDelta,
  deltaText,
  incrementColumnDelta,
  parseDeltaText,
  setColumnsDelta,
} from '../../src/write-back/model/delta.js';
import { entityKey, entityKeyOfStored, isEntityKey, parseEntityKey, storedEntityKey } from '../../src/write-back/model/entity-key.js';
import { WriteBackInvalidDeltaError } from '../../src/write-back/index.js';

describe('flat deltas (entity row updates): compose column by column, never merge', () => {
  it('a later value of a column replaces the earlier one whole (jsonb included); null is a value', () => {
    let delta = composeDelta('k', undefined, setColumnsDelta({ prefs: { a: 1, b: 2 }, name: 'x' }));
    delta = composeDelta('k', delta, setColumnsDelta({ prefs: { c: 3 }, bio: null }));
    expect(delta).toEqual({ flat: true, set: { prefs: { c: 3 }, name: 'x', bio: null } });
    expect(applyDelta('k', { prefs: { z: 0 }, name: 'old', bio: 'b', n: 1 }, delta)).toEqual({ prefs: { c: 3 }, name: 'x', bio: null, n: 1 });
  });

  it('increments add up; a later set of a column drops the increments before it, a later increment adds to the set', () => {
    let delta = composeDelta('k', undefined, incrementColumnDelta('k', 'views', 2));
    delta = composeDelta('k', delta, incrementColumnDelta('k', 'views', 3));
    delta = composeDelta('k', delta, incrementColumnDelta('k', 'likes', 1));
    expect(delta).toEqual({ flat: true, inc: { views: 5, likes: 1 } });
    delta = composeDelta('k', delta, setColumnsDelta({ views: 100 }));
    expect(delta).toEqual({ flat: true, set: { views: 100 }, inc: { likes: 1 } });
    delta = composeDelta('k', delta, incrementColumnDelta('k', 'views', 1));
    expect(applyDelta('k', { views: 7, likes: 1 }, delta)).toEqual({ views: 101, likes: 2 });
  });

  it('adds exactly to the decimal strings of bigint and numeric columns; NULL counts from 0', () => {
    const delta = composeDelta('k', incrementColumnDelta('k', 'big', 5), incrementColumnDelta('k', 'money', -3));
    const row = applyDelta('k', { big: '9007199254740993', money: '1.25', nothing: null }, composeDelta('k', delta, incrementColumnDelta('k', 'nothing', 4)));
    expect(row).toEqual({ big: '9007199254740998', money: '-1.75', nothing: 4 });
    expect(addDecimal('0.05', -1)).toBe('-0.95');
    expect(addDecimal('-12', 12)).toBe('0');
  });

  it('an update of an absent row is nothing (as SQL UPDATE); a non-number column refuses an increment', () => {
    expect(applyDelta('k', undefined, setColumnsDelta({ a: 1 }))).toBeUndefined();
    expect(() => applyDelta('k', { a: 'text' }, incrementColumnDelta('k', 'a', 1))).toThrow(WriteBackInvalidDeltaError);
    expect(() => incrementColumnDelta('k', 'a', 0.5)).toThrow(WriteBackInvalidDeltaError);
    expect(() => composeDelta('k', { inc: 1 }, setColumnsDelta({ a: 1 }))).toThrow(/cannot be composed/);
  });

  it('travels to Postgres and the WAL as text and back unchanged', () => {
    const delta = composeDelta('k', setColumnsDelta({ a: null, b: [1] }), incrementColumnDelta('k', 'n', 2));
    expect(deltaText(delta)).toBe('{"f":1,"c":{"a":null,"b":[1]},"i":{"n":2}}');
    expect(parseDeltaText(deltaText(delta))).toEqual(delta);
  });
});

describe('entity keys', () => {
  it('cannot be taken by user keys (NUL), map to a stored form and back', () => {
    const key = entityKey('Membership', [3, 'a:b']);
    expect(isEntityKey(key)).toBe(true);
    expect(isEntityKey('Membership:[3,"a:b"]')).toBe(false);
    expect(parseEntityKey(key)).toEqual({ entity: 'Membership', primaryKey: '[3,"a:b"]' });
    expect(storedEntityKey(key)).toBe('Membership:[3,"a:b"]');
    expect(entityKeyOfStored('Membership', storedEntityKey(key))).toBe(key);
  });
});
