import { DirtySet } from '../../src/write-back/cache/dirty-set.js';
import { WriteBackCache } from '../../src/write-back/cache/write-back-cache.js';
import type { StoredRow } from '../../src/write-back/model/types.js';

/**
 * A cache and the dirty set it records writes in, held apart as the write pipeline holds them: a test plays the
 * flusher's part on the set by hand (take, then complete or release) and reports the outcome to the cache.
 */
export function cacheWithDirtySet(
  maxEntries: number,
  maxDirtyEntries: number,
  loader: (key: string) => Promise<StoredRow | undefined>,
  maxDirtyBytes = Number.MAX_SAFE_INTEGER,
  maxCleanBytes = Number.MAX_SAFE_INTEGER,
): { cache: WriteBackCache; dirty: DirtySet } {
  const dirty = new DirtySet();
  const cache = new WriteBackCache(maxEntries, maxDirtyEntries, loader, Date.now, maxDirtyBytes, maxCleanBytes, undefined, dirty);
  return { cache, dirty };
}

/** What the flusher and the pipeline do when a batch of every queued entry commits. */
export function flushAll(cache: WriteBackCache, dirty: DirtySet): void {
  for (const item of dirty.take(Number.MAX_SAFE_INTEGER)) cache.onCommitted(item, dirty.complete(item));
}
