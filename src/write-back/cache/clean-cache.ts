import { LRUCache } from 'lru-cache';

/** A value known to equal the row in Postgres (flushed or loaded). */
export interface CleanEntry {
  readonly json: string;
  readonly version: number;
}

/** The size of a clean entry for `maxCleanBytes`: characters of its key and JSON text (at least 1, as lru-cache wants). */
const sizeOf = (entry: CleanEntry, key: string): number => key.length + entry.json.length;

/**
 * Clean entries, evicted least-recently-used beyond `maxEntries` or beyond `maxBytes` characters of keys and
 * values. Dirty entries never live here (they are in the DirtySet and are never evicted), so eviction can only
 * drop values Postgres already holds.
 */
export class CleanCache {
  private readonly lru: LRUCache<string, CleanEntry>;
  private maxVersion = 0;

  constructor(maxEntries: number, maxBytes = Number.MAX_SAFE_INTEGER) {
    this.lru = new LRUCache<string, CleanEntry>({ max: maxEntries, maxSize: maxBytes, sizeCalculation: sizeOf });
  }

  get size(): number {
    return this.lru.size;
  }

  /** Characters of the cached keys and values. */
  get bytes(): number {
    return this.lru.calculatedSize;
  }

  /** The highest version ever stored here (0 if none): no cached entry holds a higher one. */
  get highestVersion(): number {
    return this.maxVersion;
  }

  get(key: string): CleanEntry | undefined {
    return this.lru.get(key);
  }

  /** Looks without refreshing recency. */
  peek(key: string): CleanEntry | undefined {
    return this.lru.peek(key);
  }

  /** Stores `entry` unless a newer version of the key is already cached. */
  set(key: string, entry: CleanEntry): void {
    const current = this.lru.peek(key);
    if (current !== undefined && current.version > entry.version) return;
    this.add(key, entry);
  }

  /**
   * Stores `entry` for a key that has no clean copy, which is the case for a key that was dirty until now (dirty
   * keys never have one): skips the version check, so one lookup less than {@link set}.
   */
  add(key: string, entry: CleanEntry): void {
    if (entry.version > this.maxVersion) this.maxVersion = entry.version;
    this.lru.set(key, entry);
  }

  /** Drops every entry (the highest version stays: it is a bound, not a count). */
  clear(): void {
    this.lru.clear();
  }

  /** Returns whether there was a copy to delete. */
  delete(key: string): boolean {
    return this.lru.delete(key);
  }
}
