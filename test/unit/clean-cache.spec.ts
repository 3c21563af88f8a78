import { describe, expect, it } from 'vitest';
import { CleanCache } from '../../src/write-back/cache/clean-cache.js';

const entry = (json: string, version: number) => ({ json, version });

describe('CleanCache', () => {
  it('stores and returns entries', () => {
    const cache = new CleanCache(10);
    cache.set('a', entry('1', 1));
    expect(cache.get('a')).toEqual(entry('1', 1));
    expect(cache.peek('a')).toEqual(entry('1', 1));
    expect(cache.get('b')).toBeUndefined();
    expect(cache.size).toBe(1);
  });

  it('is bounded by maxEntries and evicts the least-recently-used entry', () => {
    const cache = new CleanCache(3);
    cache.set('a', entry('a', 1));
    cache.set('b', entry('b', 1));
    cache.set('c', entry('c', 1));
    cache.get('a'); // a is now the most recently used: b is the LRU
    cache.set('d', entry('d', 1));
    expect(cache.size).toBe(3);
    expect(cache.peek('b')).toBeUndefined();
    expect(cache.peek('a')).toBeDefined();
    expect(cache.peek('c')).toBeDefined();
    expect(cache.peek('d')).toBeDefined();
  });

  it('peek does not refresh recency', () => {
    const cache = new CleanCache(2);
    cache.set('a', entry('a', 1));
    cache.set('b', entry('b', 1));
    cache.peek('a');
    cache.set('c', entry('c', 1));
    expect(cache.peek('a')).toBeUndefined();
    expect(cache.peek('b')).toBeDefined();
  });

  it('never caches an older version over a newer one', () => {
    const cache = new CleanCache(10);
    cache.set('a', entry('new', 10));
    cache.set('a', entry('old', 9));
    expect(cache.get('a')).toEqual(entry('new', 10));
    cache.set('a', entry('newer', 11));
    expect(cache.get('a')).toEqual(entry('newer', 11));
  });

  it('delete removes the entry', () => {
    const cache = new CleanCache(10);
    cache.set('a', entry('1', 1));
    cache.delete('a');
    expect(cache.get('a')).toBeUndefined();
    expect(cache.size).toBe(0);
  });
});
