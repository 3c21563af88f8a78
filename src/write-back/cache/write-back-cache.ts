import type { FlushItem, StoredRow } from '../model/types.js';
import { CleanCache, type CleanEntry } from './clean-cache.js';
import { applyDelta, composeDelta, type Delta } from '../model/delta.js';
import { DirtySet, type DirtyView } from './dirty-set.js';
import { HybridClock } from './hybrid-clock.js';
import { isEntityKey } from '../model/entity-key.js';

export interface CacheCounters {
  reads: number;
  hits: number;
  misses: number;
  loads: number;
  writes: number;
  coalesced: number;
  /** Clean copies dropped because another instance committed a newer version (or the listener had a gap). */
  invalidations: number;
  /** Pending writes dropped because another instance committed a newer version of their key. */
  superseded: number;
}

interface PendingLoad {
  promise: Promise<StoredRow | undefined>;
  /** A write to the key landed while loading: the loaded row must not be cached, memory wins. */
  stale: boolean;
  /** Another instance committed this version while loading: an older loaded row is returned but not cached. */
  minVersion: number;
  /** The trust epoch when the load started: a row read before a listener gap ended is not cached after it. */
  epoch: number;
}

/**
 * The in-memory state: dirty entries (never evicted) over an LRU of clean ones, versions per key, read-through
 * with one load per key at a time, and the room left under `maxDirtyEntries`. Values are kept as the JSON text
 * serialized at `set`. No timers, no SQL: the loader is injected.
 */
export class WriteBackCache {
  /** The dirty entries, to read: writes go through {@link write} and the flusher through the write pipeline. */
  readonly dirty: DirtyView;
  readonly clean: CleanCache;
  readonly counters: CacheCounters = { reads: 0, hits: 0, misses: 0, loads: 0, writes: 0, coalesced: 0, invalidations: 0, superseded: 0 };
  /** Told about a pending write dropped by {@link invalidate} (the WAL may forget its record). */
  onSuperseded: ((item: FlushItem) => void) | undefined;
  readonly clock: HybridClock;
  /**
   * Whether clean copies may be served and kept: false while the invalidation listener is down (a notification of
   * another instance's commit may be missed then), so reads go to Postgres. Always true for a single instance.
   */
  private trusted = true;
  /** Counts trust changes: a load that started in another epoch does not cache its row. */
  private epoch = 0;
  private readonly loading = new Map<string, PendingLoad>();
  /**
   * Keys being flushed now for which another instance announced a newer version meanwhile: the commit of ours
   * (its answer may arrive after the notification) must not leave our older value as a clean copy.
   */
  private readonly announcedInFlight = new Map<string, number>();
  private roomWaiters: (() => void)[] = [];
  /** The clock reading of the latest `write` (ms), so the caller need not read the clock again. */
  lastWriteAt = 0;

  constructor(
    maxEntries: number,
    private readonly maxDirtyEntries: number,
    private readonly loader: (key: string) => Promise<StoredRow | undefined>,
    private readonly now: () => number = Date.now,
    private readonly maxDirtyBytes = Number.MAX_SAFE_INTEGER,
    maxCleanBytes = Number.MAX_SAFE_INTEGER,
    clock?: HybridClock,
    /** The write pipeline's dirty set (it hands the flusher a port onto it); a set of its own by default. */
    private readonly dirtySet = new DirtySet(),
  ) {
    this.dirty = dirtySet;
    this.clean = new CleanCache(maxEntries, maxCleanBytes);
    this.clock = clock ?? new HybridClock(0, now);
  }

  /** The JSON text of `key`, from memory or loaded from Postgres; undefined if absent or pending delete. */
  async get(key: string): Promise<string | undefined> {
    this.counters.reads++;
    const dirty = this.dirtySet.get(key);
    if (dirty !== undefined) {
      if (dirty.relative) return this.getRelative(key);
      this.counters.hits++;
      return dirty.json ?? undefined;
    }
    const clean = this.trusted ? this.clean.get(key) : undefined;
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
      let base = this.trusted ? this.clean.peek(key) : undefined;
      if (base !== undefined) {
        this.counters.hits++;
      } else {
        this.counters.misses++;
        const pending = this.loadRow(key);
        const row = await pending.promise;
        if (pending.stale) continue;
        base = row;
      }
      const entry = this.dirtySet.get(key);
      if (entry === undefined || !entry.relative) return this.get(key);
      let value: unknown = base === undefined ? undefined : JSON.parse(base.json);
      if (entry.flight?.delta !== undefined) value = applyDelta(key, value, entry.flight.delta);
      if (entry.delta !== undefined) value = applyDelta(key, value, entry.delta);
      return value === undefined ? undefined : JSON.stringify(value);
    }
  }

  /**
   * One load of `key` at a time, shared by every reader; the row is cached clean unless a write (or a delta commit)
   * made it stale, or the key now holds a value in memory (a key holding deltas keeps it as their base).
   */
  private loadRow(key: string): PendingLoad {
    const found = this.loading.get(key);
    if (found !== undefined) return found;
    this.counters.loads++;
    const created: PendingLoad = { stale: false, minVersion: 0, epoch: this.epoch, promise: undefined! };
    created.promise = this.loader(key)
      .then((row) => {
        if (row === undefined) return row;
        this.clock.observe(row.version);
        const dirty = this.dirtySet.get(key);
        if (this.cacheable(created, row) && (dirty === undefined || dirty.relative)) this.clean.set(key, row);
        return row;
      })
      .finally(() => {
        if (this.loading.get(key) === created) this.loading.delete(key);
      });
    this.loading.set(key, created);
    return created;
  }

  /** A loaded row may be kept clean: no write landed meanwhile, the listener is (and stayed) up, none newer was announced. */
  private cacheable(load: PendingLoad, row: StoredRow): boolean {
    return !load.stale && this.trusted && load.epoch === this.epoch && row.version >= load.minVersion;
  }

  private async load(key: string): Promise<string | undefined> {
    const pending = this.loadRow(key);
    const row = await pending.promise;
    if (!pending.stale) return row?.json;
    // Written while loading: what memory holds now is newer than the row read (deltas apply to a base of their own).
    const dirty = this.dirtySet.get(key);
    if (dirty !== undefined) return dirty.relative ? this.getRelative(key) : (dirty.json ?? undefined);
    return this.clean.peek(key)?.json;
  }

  /**
   * True if a write to `key` whose value has `valueChars` characters (0 for a delete) fits under `maxDirtyEntries`
   * and `maxDirtyBytes` now. Rewriting a dirty key takes no entry, and fits if what it adds fits in bytes.
   */
  hasRoomFor(key: string, valueChars = 0): boolean {
    // The common case with one comparison each: counting the whole write against the bytes (a rewrite adds less).
    if (this.dirtySet.size < this.maxDirtyEntries && this.dirtySet.bytes + key.length + valueChars <= this.maxDirtyBytes) return true;
    const entry = this.dirtySet.get(key);
    if (entry === undefined) return false;
    const added = valueChars - (entry.json === null ? 0 : entry.json.length);
    return added <= 0 || this.dirtySet.bytes + added <= this.maxDirtyBytes;
  }

  /** Which bound keeps `key` out now: `maxDirtyEntries` when the entries are full, else `maxDirtyBytes`. */
  fullBound(key: string): 'maxDirtyEntries' | 'maxDirtyBytes' {
    return this.dirtySet.size >= this.maxDirtyEntries && !this.dirtySet.has(key) ? 'maxDirtyEntries' : 'maxDirtyBytes';
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
    this.lastWriteAt = now;
    const dirty = this.dirtySet.get(key);
    let floor: number;
    // Whether the key had a clean copy (it has one right after its flush committed): the dirty set may hold it.
    let wasClean = false;
    if (dirty !== undefined) {
      // A dirty key has no clean copy (see applyWrite), so there is nothing to look up or drop there; unless it
      // holds deltas, which keep the stored value as their base.
      floor = dirty.version;
      if (dirty.relative) this.clean.delete(key);
    } else {
      // Every clean copy's version is at most clean.highestVersion, and the clock already observed it (loads and
      // commits are observed), so it bounds the key's version without reading the copy. The dirty entry shadows
      // the clean copy; drop it so one key is held once.
      floor = this.clean.highestVersion;
      wasClean = this.clean.delete(key);
    }
    const version = this.clock.next(floor, now);
    this.counters.writes++;
    if (this.dirtySet.writeEntry(dirty, key, json, version, rank, now, wasClean)) this.counters.coalesced++;
    this.markLoadsStale(key);
    return version;
  }

  /**
   * Records an increment or merge. On a key holding a value (or a pending delete) the change applies in memory and
   * the result is written as a value (`serialize` checks and snapshots it), so it replaces rows like a `set`;
   * otherwise it is kept as a delta, composed with the pending ones, and applied by Postgres to whatever the row
   * holds then. Throws (changing nothing) when the change cannot apply. Returns the version.
   */
  writeDelta(key: string, delta: Delta, rank: number, serialize: (value: unknown) => string, deltaChars = 0): number {
    const dirty = this.dirtySet.get(key);
    if (dirty !== undefined && !dirty.relative) {
      // A row update of a row pending delete changes nothing, as an UPDATE of an absent row does.
      if (delta.flat === true && dirty.json === null) return dirty.version;
      const value = applyDelta(key, dirty.json === null ? undefined : JSON.parse(dirty.json), delta);
      return this.write(key, serialize(value), rank);
    }
    const composed = composeDelta(key, dirty?.delta, delta);
    // Fail at the call, not at the flush, when what this instance knows of the key already says it cannot apply.
    const base = this.trusted ? this.clean.peek(key) : undefined;
    let value: unknown = base === undefined ? undefined : JSON.parse(base.json);
    if (dirty?.flight?.delta !== undefined) value = applyDelta(key, value, dirty.flight.delta);
    if (base !== undefined || dirty?.flight !== undefined) applyDelta(key, value, composed);
    const now = this.now();
    const version = this.clock.next(Math.max(dirty?.version ?? 0, base?.version ?? 0), now);
    this.counters.writes++;
    if (this.dirtySet.writeEntry(dirty, key, null, version, rank, now, false, composed, deltaChars)) this.counters.coalesced++;
    return version;
  }

  /** Restores a key's deltas from the write-ahead log, at their logged versions (see DirtySet.restoreDelta). */
  requeueDelta(
    key: string,
    flight: { version: number; delta: Delta } | undefined,
    pending: Delta | undefined,
    version: number,
    rank: number,
    deltaChars = 0,
  ): void {
    const item = flight === undefined ? undefined : { key, json: null, version: flight.version, rank, delta: flight.delta };
    this.clock.observe(version);
    this.counters.writes++;
    this.dirtySet.restoreDelta(key, item, pending, version, rank, this.now(), deltaChars);
  }

  /**
   * Re-queues a write at its original version (a dead-letter replay), unless memory already holds a newer
   * version of the key. The version guard in Postgres decides against newer rows. Returns false if skipped.
   */
  requeue(key: string, json: string | null, version: number, rank: number): boolean {
    this.clock.observe(version);
    const known = this.dirtySet.get(key)?.version ?? this.clean.peek(key)?.version ?? 0;
    if (known >= version) return false;
    this.applyWrite(key, json, version, rank);
    return true;
  }

  private applyWrite(key: string, json: string | null, version: number, rank: number): void {
    this.counters.writes++;
    if (this.dirtySet.write(key, json, version, rank, this.now())) this.counters.coalesced++;
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
    this.clock.observe(item.version);
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
    if (this.announcedInFlight.size > 0 && this.settleAnnounced(item, clean)) superseded = true;
    if (clean) {
      // Superseded: Postgres holds a newer version than this write; drop ours so the next read loads theirs.
      // The key was dirty until now, so it has no clean copy; the flushed snapshot is immutable, so it is itself
      // the clean entry (no copy per committed row).
      if (item.json !== null && !superseded && this.trusted) this.clean.add(item.key, item as CleanEntry);
      else this.clean.delete(item.key);
      this.wakeRoomWaiters();
    }
  }

  onDeadLettered(item: FlushItem, clean: boolean): void {
    this.clock.observe(item.version);
    if (this.announcedInFlight.size > 0) this.settleAnnounced(item, clean);
    // Memory falls back to what Postgres holds, so reads agree with the table.
    if (clean) {
      this.clean.delete(item.key);
      this.wakeRoomWaiters();
    }
  }

  /**
   * Another instance committed `version` of `key` (an upsert or a delete): lifts the clock past it, drops an older
   * clean copy, keeps a load in flight from caching an older row, and drops an older pending write that is waiting
   * in the queue (the version guard would skip it; reads get the committed row at once instead). One in flight is
   * left to the flusher, which owns it: the guard skips it and it is then dropped the same way. Pending deltas are
   * never dropped: they apply on top of whatever another instance committed.
   *
   * `delta`: the other instance applied a delta at `version`, which changed the row without necessarily raising
   * its version above a copy held here: every clean copy of the key is dropped, whatever its version.
   */
  invalidate(key: string, version: number, delta = false): void {
    this.clock.observe(version);
    const dirty = this.dirtySet.get(key);
    // An entity row has no version guard in Postgres by default: a pending write of it still wins when it flushes.
    if (dirty !== undefined && !dirty.relative && dirty.version < version && !isEntityKey(key)) {
      if (dirty.inFlight) {
        if ((this.announcedInFlight.get(key) ?? 0) < version) this.announcedInFlight.set(key, version);
      } else {
        // Taken and completed in the same synchronous step: it is never in flight for the flusher to see.
        const item = this.dirtySet.takeKey(key)!;
        this.dirtySet.complete(item);
        this.counters.superseded++;
        this.onSuperseded?.(item);
        this.wakeRoomWaiters();
      }
    }
    const clean = this.clean.peek(key);
    if (clean !== undefined && (delta || clean.version < version)) {
      this.clean.delete(key);
      this.counters.invalidations++;
    }
    if (this.loading.size === 0) return;
    const loading = this.loading.get(key);
    if (loading === undefined) return;
    if (delta) loading.stale = true;
    else if (loading.minVersion < version) loading.minVersion = version;
  }

  /**
   * The flush of `item` ended: whether another instance announced a newer version of its key while it was in flight
   * (then ours is not kept as a clean copy, and a write queued since, if also older, is dropped as superseded).
   */
  private settleAnnounced(item: FlushItem, clean: boolean): boolean {
    const announced = this.announcedInFlight.get(item.key);
    if (announced === undefined) return false;
    this.announcedInFlight.delete(item.key);
    if (announced <= item.version) return false;
    if (!clean) queueMicrotask(() => this.invalidate(item.key, announced));
    return true;
  }

  /** Drops every clean copy (a notification too large to name its keys). */
  invalidateAll(): void {
    this.counters.invalidations += this.clean.size;
    this.clean.clear();
    this.epoch++;
  }

  /**
   * Whether clean copies can be trusted (the invalidation listener is up). Either way every clean copy is dropped:
   * going down, notifications may be missed from now on; coming back, some may have been missed meanwhile.
   */
  setTrusted(trusted: boolean): void {
    this.invalidateAll();
    this.trusted = trusted;
  }

  get isTrusted(): boolean {
    return this.trusted;
  }

  private wakeRoomWaiters(): void {
    if (this.roomWaiters.length === 0) return;
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const wake of waiters) wake();
  }
}
