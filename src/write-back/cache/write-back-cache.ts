import type { FlushListener } from '../flush/flusher.js';
import type { FlushItem } from './dirty-set.js';
import type { StoredRow } from '../store/write-back.store.js';
import { CleanCache, type CleanEntry } from './clean-cache.js';
import { applyDelta, composeDelta, type Delta } from './delta.js';
import { DirtySet } from './dirty-set.js';
import { VersionClock } from './version-clock.js';
import { isEntityKey } from './entity-key.js';

export interface CacheCounters {
  reads: number;
  hits: number;
  misses: number;
  loads: number;
  writes: number;
  coalesced: number;
}

interface PendingLoad {
  promise: Promise<StoredRow | undefined>;
  /** A write to the key landed while loading: the loaded row must not be cached, memory wins. */
  stale: boolean;
}

/**
 * The in-memory state: dirty entries (never evicted) over an LRU of clean ones, versions per key, read-through
 * with one load per key at a time, and the room left under `maxDirtyEntries`. Values are kept as the JSON text
 * serialized at `set`. No timers, no SQL: the loader is injected.
 */
export class WriteBackCache implements FlushListener {
  readonly dirty = new DirtySet();
  readonly clean: CleanCache;
  readonly counters: CacheCounters = { reads: 0, hits: 0, misses: 0, loads: 0, writes: 0, coalesced: 0 };
  private readonly clock: VersionClock;
  private readonly loading = new Map<string, PendingLoad>();
  private roomWaiters: (() => void)[] = [];

  constructor(
    maxEntries: number,
    private readonly maxDirtyEntries: number,
    private readonly loader: (key: string) => Promise<StoredRow | undefined>,
    private readonly now: () => number = Date.now,
  ) {
    this.clean = new CleanCache(maxEntries);
    this.clock = new VersionClock(now);
  }

  /** The JSON text of `key`, from memory or loaded from Postgres; undefined if absent or pending delete. */
  async get(key: string): Promise<string | undefined> {
    this.counters.reads++;
    const dirty = this.dirty.get(key);
    if (dirty !== undefined) {
      if (dirty.relative) return this.getRelative(key);
      this.counters.hits++;
      return dirty.json ?? undefined;
    }
    const clean = this.clean.get(key);
    if (clean !== undefined) {
      this.counters.hits++;
      return clean.json;
    }
    this.counters.misses++;
    return this.load(key);
  }

  /**
   * A key holding deltas: the stored value (the clean copy, else loaded and kept as the clean copy) with the
   * deltas in flight and pending applied. A delta flush that commits meanwhile drops the copy, so the load is
   * repeated rather than counting that delta twice or not at all.
   */
  private async getRelative(key: string): Promise<string | undefined> {
    for (;;) {
      let base = this.clean.peek(key);
      if (base !== undefined) {
        this.counters.hits++;
      } else {
        this.counters.misses++;
        const pending = this.loadRow(key);
        const row = await pending.promise;
        if (pending.stale) continue;
        base = row;
      }
      const entry = this.dirty.get(key);
      if (entry === undefined || !entry.relative) return this.get(key);
      let value: unknown = base === undefined ? undefined : JSON.parse(base.json);
      if (entry.flight?.delta !== undefined) value = applyDelta(key, value, entry.flight.delta);
      if (entry.delta !== undefined) value = applyDelta(key, value, entry.delta);
      return value === undefined ? undefined : JSON.stringify(value);
    }
  }

  /** One load of `key` at a time; the row is cached clean unless a write (or a delta commit) made it stale. */
  private loadRow(key: string): PendingLoad {
    const found = this.loading.get(key);
    if (found !== undefined) return found;
    this.counters.loads++;
    const created: PendingLoad = { stale: false, promise: undefined! };
    created.promise = this.loader(key)
      .then((row) => {
        const dirty = this.dirty.get(key);
        if (row !== undefined && !created.stale && (dirty === undefined || dirty.relative)) this.clean.set(key, row);
        return row;
      })
      .finally(() => {
        if (this.loading.get(key) === created) this.loading.delete(key);
      });
    this.loading.set(key, created);
    return created;
  }

  private async load(key: string): Promise<string | undefined> {
    let pending = this.loading.get(key);
    if (pending === undefined) {
      this.counters.loads++;
      const created: PendingLoad = { stale: false, promise: undefined! };
      created.promise = this.loader(key)
        .then((row) => {
          if (row !== undefined && !created.stale && !this.dirty.has(key)) this.clean.set(key, row);
          return row;
        })
        .finally(() => {
          if (this.loading.get(key) === created) this.loading.delete(key);
        });
      this.loading.set(key, created);
      pending = created;
    }
    const row = await pending.promise;
    if (!pending.stale) return row?.json;
    // Written while loading: what memory holds now is newer than the row read.
    const dirty = this.dirty.get(key);
    if (dirty !== undefined) return dirty.json ?? undefined;
    return this.clean.peek(key)?.json;
  }

  /** True if a write to `key` fits under `maxDirtyEntries` now (rewriting a dirty key always fits). */
  hasRoomFor(key: string): boolean {
    return this.dirty.size < this.maxDirtyEntries || this.dirty.has(key);
  }

  /** Resolves when an entry leaves the dirty set (the caller checks again), or false after `timeoutMs`. */
  waitForRoom(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.roomWaiters = this.roomWaiters.filter((w) => w !== wake);
        resolve(false);
      }, timeoutMs);
      this.roomWaiters.push(wake);
    });
  }

  /** Records a write (`json === null`: a delete) at a version above any this process has seen for the key. */
  write(key: string, json: string | null, rank: number): number {
    const now = this.now();
    const dirty = this.dirty.get(key);
    let floor = 0;
    // Whether the key had a clean copy (it has one right after its flush committed): the dirty set may hold it.
    let wasClean = false;
    if (dirty !== undefined) {
      // A dirty key has no clean copy (see applyWrite), so there is nothing to look up or drop there; unless it
      // holds deltas, which keep the stored value as their base.
      floor = dirty.version;
      if (dirty.relative) this.clean.delete(key);
    } else if (this.clean.highestVersion <= this.clock.lastIssued) {
      // No clean entry holds a version above one this clock already issued (the usual case: clean entries are
      // our own flushed writes), so none can raise the floor: drop the copy, if any, without reading it.
      wasClean = this.clean.delete(key);
    } else {
      // Some clean entry may be ahead of our clock (loaded from a replica whose clock runs ahead, or replayed).
      const clean = this.clean.peek(key);
      if (clean !== undefined) {
        floor = clean.version;
        // The dirty entry shadows the clean copy; drop it so one key is held once.
        wasClean = this.clean.delete(key);
      }
    }
    const version = this.clock.next(floor, now);
    this.counters.writes++;
    if (this.dirty.writeEntry(dirty, key, json, version, rank, now, wasClean)) this.counters.coalesced++;
    this.markLoadsStale(key);
    return version;
  }

  /**
   * Records an increment or merge. On a key holding a value (or a pending delete) the change applies in memory and
   * the result is written as a value (`serialize` checks and snapshots it), so it replaces rows like a `set`;
   * otherwise it is kept as a delta, composed with the pending ones, and applied by Postgres to whatever the row
   * holds then. Throws (changing nothing) when the change cannot apply. Returns the version.
   */
  writeDelta(key: string, delta: Delta, rank: number, serialize: (value: unknown) => string): number {
    const dirty = this.dirty.get(key);
    if (dirty !== undefined && !dirty.relative) {
      // A row update of a row pending delete changes nothing, as an UPDATE of an absent row does.
      if (delta.flat === true && dirty.json === null) return dirty.version;
      const value = applyDelta(key, dirty.json === null ? undefined : JSON.parse(dirty.json), delta);
      return this.write(key, serialize(value), rank);
    }
    const composed = composeDelta(key, dirty?.delta, delta);
    // Fail at the call, not at the flush, when what this instance knows of the key already says it cannot apply.
    const base = this.clean.peek(key);
    let value: unknown = base === undefined ? undefined : JSON.parse(base.json);
    if (dirty?.flight?.delta !== undefined) value = applyDelta(key, value, dirty.flight.delta);
    if (base !== undefined || dirty?.flight !== undefined) applyDelta(key, value, composed);
    const now = this.now();
    const version = this.clock.next(Math.max(dirty?.version ?? 0, base?.version ?? 0), now);
    this.counters.writes++;
    if (this.dirty.writeEntry(dirty, key, null, version, rank, now, false, composed)) this.counters.coalesced++;
    return version;
  }

  /** Restores a key's deltas from the write-ahead log, at their logged versions (see DirtySet.restoreDelta). */
  requeueDelta(
    key: string,
    flight: { version: number; delta: Delta } | undefined,
    pending: Delta | undefined,
    version: number,
    rank: number,
  ): void {
    const item = flight === undefined ? undefined : { key, json: null, version: flight.version, rank, delta: flight.delta };
    this.clock.next(version);
    this.counters.writes++;
    this.dirty.restoreDelta(key, item, pending, version, rank, this.now());
  }

  /**
   * Re-queues a write at its original version (a dead-letter replay), unless memory already holds a newer
   * version of the key. The version guard in Postgres decides against newer rows. Returns false if skipped.
   */
  requeue(key: string, json: string | null, version: number, rank: number): boolean {
    const known = this.dirty.get(key)?.version ?? this.clean.peek(key)?.version ?? 0;
    if (known >= version) return false;
    this.applyWrite(key, json, version, rank);
    return true;
  }

  private applyWrite(key: string, json: string | null, version: number, rank: number): void {
    this.counters.writes++;
    if (this.dirty.write(key, json, version, rank, this.now())) this.counters.coalesced++;
    // The dirty entry shadows any clean copy; drop it so one key is held once.
    this.clean.delete(key);
    this.markLoadsStale(key);
  }

  /** A write to the key landed while loading it: the loaded row must not be cached. */
  private markLoadsStale(key: string): void {
    if (this.loading.size === 0) return;
    const loading = this.loading.get(key);
    if (loading !== undefined) loading.stale = true;
  }

  onCommitted(item: FlushItem, clean: boolean, superseded = false): void {
    if (item.delta !== undefined) {
      // Postgres applied the delta to its row: the copy this instance kept as a base is now behind it.
      this.clean.delete(item.key);
      this.markLoadsStale(item.key);
      if (clean) this.wakeRoomWaiters();
      return;
    }
    if (clean && isEntityKey(item.key)) {
      // An entity row as Postgres holds it may differ from what was sent (column defaults, generated columns):
      // the next read loads it.
      this.clean.delete(item.key);
      this.wakeRoomWaiters();
      return;
    }
    if (clean) {
      // Superseded: Postgres holds a newer version than this write; drop ours so the next read loads theirs.
      // The key was dirty until now, so it has no clean copy; the flushed snapshot is immutable, so it is itself
      // the clean entry (no copy per committed row).
      if (item.json !== null && !superseded) this.clean.add(item.key, item as CleanEntry);
      else this.clean.delete(item.key);
      this.wakeRoomWaiters();
    }
  }

  onDeadLettered(item: FlushItem, clean: boolean): void {
    // Memory falls back to what Postgres holds, so reads agree with the table.
    if (clean) {
      this.clean.delete(item.key);
      this.wakeRoomWaiters();
    }
  }

  private wakeRoomWaiters(): void {
    if (this.roomWaiters.length === 0) return;
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const wake of waiters) wake();
  }
}
