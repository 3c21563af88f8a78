import type { WriteBackPriority } from '../write-back.options.js';
import type { Delta } from '../model/delta.js';
import type { FlushItem } from '../model/types.js';

export const PRIORITY_RANK: Readonly<Record<WriteBackPriority, number>> = { high: 0, normal: 1, low: 2 };
export const PRIORITY_NAMES: readonly WriteBackPriority[] = ['high', 'normal', 'low'];

/**
 * One unflushed key. `json === null` is a tombstone (a pending delete), unless the entry is `relative`: then it
 * holds changes to the stored value (increments, merge patches) instead of a value.
 */
export interface DirtyEntry {
  readonly key: string;
  json: string | null;
  /** Holds deltas, not a value: `delta` (not yet taken) and `flight` (taken, or waiting to be retried as it is). */
  relative: boolean;
  /** Deltas written since the last snapshot was taken. */
  delta: Delta | undefined;
  /**
   * The delta snapshot taken for a flush: in flight, or (after a failure whose outcome is unknown) waiting to be
   * written again exactly as it was, with its version, so the ledger in Postgres applies it at most once.
   */
  flight: FlushItem | undefined;
  version: number;
  /** 0 = high, 1 = normal, 2 = low: the highest priority of the writes it holds. */
  rank: number;
  /** When the oldest write not yet committed was accepted (ms since epoch). */
  since: number;
  /** While a flush of this entry is in flight: when the first write after its snapshot arrived, else 0. */
  sinceSnapshot: number;
  /** While in flight: the highest priority of the writes after the snapshot, else 3. */
  rankSinceSnapshot: number;
  inFlight: boolean;
  /** Permanent-failure attempts of the current version. */
  attempts: number;
  firstFailedAt: number;
}

/** What may be read of the dirty set outside its owner (the write pipeline): counts and entries, no mutation. */
export interface DirtyView {
  /** Dirty entries, in flight included. */
  readonly size: number;
  readonly bytes: number;
  readonly inFlightCount: number;
  readonly queuedCount: number;
  readonly heldCount: number;
  /** Queued entries a batch can take now (not in flight, not held). */
  readonly takeableCount: number;
  readonly holding: boolean;
  get(key: string): Readonly<DirtyEntry> | undefined;
  has(key: string): boolean;
  oldestSince(): number | undefined;
  queuedByPriority(): Record<WriteBackPriority, number>;
}

/**
 * A dirty entry with the links of the two intrusive lists it sits in: the flush queue it waits in (if any) and
 * the creation-order list used for the flush lag. Linking entries to each other (instead of keeping Sets of keys)
 * makes queueing, taking and completing pointer updates with no hashing and no per-key Set storage.
 */
class Entry implements DirtyEntry {
  relative = false;
  /** Characters counted in `bytes` for the deltas this entry holds (an upper bound: kept until it stops holding deltas). */
  deltaChars = 0;
  delta: Delta | undefined = undefined;
  flight: FlushItem | undefined = undefined;
  sinceSnapshot = 0;
  rankSinceSnapshot = 3;
  inFlight = false;
  attempts = 0;
  firstFailedAt = 0;
  /** The queue this entry waits in, or null while in flight. */
  queue: EntryQueue | null = null;
  queuePrev: Entry | null = null;
  queueNext: Entry | null = null;
  /** In the creation-order list (since = creation time), or in `late` (since moved forward by complete()). */
  late = false;
  agePrev: Entry | null = null;
  ageNext: Entry | null = null;

  constructor(
    readonly key: string,
    public json: string | null,
    public version: number,
    public rank: number,
    public since: number,
  ) {}
}

/** An insertion-ordered queue of entries, linked through their queuePrev / queueNext fields. */
class EntryQueue {
  head: Entry | null = null;
  tail: Entry | null = null;
  size = 0;

  /** Appends `entry`, first taking it out of the queue it is in (if any). */
  push(entry: Entry): void {
    if (entry.queue !== null) entry.queue.remove(entry);
    entry.queue = this;
    entry.queuePrev = this.tail;
    entry.queueNext = null;
    if (this.tail === null) this.head = entry;
    else this.tail.queueNext = entry;
    this.tail = entry;
    this.size++;
  }

  /** Moves every entry of `from` to the front of this queue, in their order (`from` is left empty). */
  prependAll(from: EntryQueue): void {
    if (from.head === null) return;
    for (let entry: Entry | null = from.head; entry !== null; entry = entry.queueNext) entry.queue = this;
    from.tail!.queueNext = this.head;
    if (this.head === null) this.tail = from.tail;
    else this.head.queuePrev = from.tail;
    this.head = from.head;
    this.size += from.size;
    from.head = null;
    from.tail = null;
    from.size = 0;
  }

  remove(entry: Entry): void {
    const { queuePrev: prev, queueNext: next } = entry;
    if (prev === null) this.head = next;
    else prev.queueNext = next;
    if (next === null) this.tail = prev;
    else next.queuePrev = prev;
    entry.queue = null;
    entry.queuePrev = null;
    entry.queueNext = null;
    this.size--;
  }
}

/**
 * The unflushed entries with their versions, and the order the flusher takes them in: by priority, then
 * retries before fresh writes, then first-written first. Entries are never evicted from here; they leave only
 * when the version that was flushed is still their latest ({@link complete}) or when dead-lettered.
 *
 * Holding (hot keys): while {@link holding} is on, a key written again after {@link take} took it in the current
 * generation waits in a hold queue, where {@link take} does not see it, until {@link nextGeneration} (the flusher's
 * interval tick) or {@link setHolding}(false) puts it back in front of its fresh queue. `high` writes are never
 * held. So a key written all the time is written to Postgres once per generation, not once per batch. This is the
 * mechanism; when holding is on is decided by the flusher's HotKeyHolding policy.
 *
 * Plain data structure: no timers, no I/O. The write pipeline owns it: the cache records writes through it, the
 * flusher reaches {@link take}, {@link complete}, {@link release} and {@link recordRejection} only through the
 * pipeline's flush queue, and everyone else reads a {@link DirtyView}.
 */
export class DirtySet implements DirtyView {
  private readonly entries = new Map<string, Entry>();
  /** Per rank: entries whose flush failed transiently (retried first), then fresh ones. Insertion-ordered. */
  private readonly retryQueues: EntryQueue[] = [new EntryQueue(), new EntryQueue(), new EntryQueue()];
  private readonly freshQueues: EntryQueue[] = [new EntryQueue(), new EntryQueue(), new EntryQueue()];
  /** Per rank (0 stays empty: `high` is never held): keys re-written after being taken in this generation. */
  private readonly holdQueues: EntryQueue[] = [new EntryQueue(), new EntryQueue(), new EntryQueue()];
  private holdOn = false;
  /** Keys taken in the current generation while holding (cleared by nextGeneration). */
  private readonly takenThisGeneration = new Set<string>();
  private inFlightEntries = 0;
  /**
   * For the flush lag: entries whose `since` is their creation time, in creation order (so the first is the
   * oldest), and entries whose `since` was moved forward by complete() (few: scanned).
   */
  private ageHead: Entry | null = null;
  private ageTail: Entry | null = null;
  private readonly lateOrder = new Set<Entry>();

  /** Characters of the keys and current values (JSON text) of the dirty entries: what `maxDirtyBytes` bounds. */
  bytes = 0;

  get size(): number {
    return this.entries.size;
  }

  get inFlightCount(): number {
    return this.inFlightEntries;
  }

  /** Entries waiting to be taken (dirty and not in flight). */
  get queuedCount(): number {
    return this.entries.size - this.inFlightEntries;
  }

  /** Queued entries waiting in a hold queue (see holding): not taken until the next generation. */
  get heldCount(): number {
    return this.holdQueues[1].size + this.holdQueues[2].size;
  }

  /** Queued entries {@link take} can take now: queued and not held. */
  get takeableCount(): number {
    return this.queuedCount - this.heldCount;
  }

  /** Whether re-written keys are held (see the class comment). Off by default: HotKeyHolding turns it on. */
  get holding(): boolean {
    return this.holdOn;
  }

  /** Turns holding on or off; off starts a new generation (held entries queued again, no key counts as taken). */
  setHolding(on: boolean): void {
    if (on === this.holdOn) return;
    this.holdOn = on;
    if (!on) this.nextGeneration();
  }

  /** Starts a new generation: held entries go back in front of their fresh queues, and no key counts as taken. */
  nextGeneration(): void {
    for (let rank = 1; rank < 3; rank++) this.freshQueues[rank].prependAll(this.holdQueues[rank]);
    this.takenThisGeneration.clear();
  }

  /** Queued `high` entries (fresh or to retry). */
  get queuedHighCount(): number {
    return this.queuedAt(0);
  }

  get(key: string): DirtyEntry | undefined {
    return this.entries.get(key);
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /**
   * Records a write (or a tombstone with `json === null`). Returns true when it coalesced into an entry
   * that was already dirty and not in flight, so no extra row write will happen.
   */
  write(key: string, json: string | null, version: number, rank: number, now: number, delta?: Delta): boolean {
    return this.writeEntry(this.entries.get(key), key, json, version, rank, now, false, delta);
  }

  /**
   * {@link write} for a caller that has just looked the key up: `entry` must be what {@link get} returned for
   * `key` in the same synchronous step (saves a second lookup on the write path). `wasClean`: the key had a clean
   * copy, as it has right after its flush committed; only then can a new entry be one to hold. With `delta`, the
   * entry becomes (or stays) relative and `delta` replaces its pending delta (the caller composed it); without, the
   * write replaces whatever deltas the entry held.
   */
  writeEntry(
    found: DirtyEntry | undefined,
    key: string,
    json: string | null,
    version: number,
    rank: number,
    now: number,
    wasClean = false,
    delta?: Delta,
    deltaChars = 0,
  ): boolean {
    if (found === undefined) {
      this.bytes += key.length + (json === null ? 0 : json.length) + deltaChars;
      const created = new Entry(key, json, version, rank, now);
      if (delta !== undefined) {
        created.relative = true;
        created.delta = delta;
        created.deltaChars = deltaChars;
      }
      this.entries.set(key, created);
      this.queueFor(key, rank, wasClean).push(created);
      this.appendAge(created);
      return false;
    }
    const entry = found as Entry;
    this.bytes += (json === null ? 0 : json.length) - (entry.json === null ? 0 : entry.json.length);
    if (delta !== undefined) {
      entry.deltaChars += deltaChars;
      this.bytes += deltaChars;
    } else if (entry.deltaChars !== 0) {
      this.bytes -= entry.deltaChars;
      entry.deltaChars = 0;
    }
    entry.json = json;
    entry.version = version;
    entry.relative = delta !== undefined;
    entry.delta = delta;
    // A flight in the air stays until it lands; one waiting for a retry is replaced by a value (set or delete).
    if (delta === undefined && !entry.inFlight) entry.flight = undefined;
    if (delta === undefined) {
      entry.attempts = 0;
      entry.firstFailedAt = 0;
    }
    if (entry.inFlight) {
      if (entry.sinceSnapshot === 0) entry.sinceSnapshot = now;
      if (rank < entry.rankSinceSnapshot) entry.rankSinceSnapshot = rank;
      return false;
    }
    if (rank < entry.rank) {
      // An upgraded retry stays a retry; a held entry stays held, unless it became `high`.
      const queue = entry.queue;
      if (queue === this.retryQueues[entry.rank]) this.retryQueues[rank].push(entry);
      else if (queue === this.holdQueues[entry.rank] && rank > 0) this.holdQueues[rank].push(entry);
      else this.freshQueues[rank].push(entry);
      entry.rank = rank;
    }
    return true;
  }

  /**
   * Restores a key's deltas from the write-ahead log (a new entry): `flight`, a snapshot whose outcome is unknown,
   * is written first exactly as it was; `pending`, at `version`, after it. Replaces nothing: the key must be clean.
   */
  restoreDelta(
    key: string,
    flight: FlushItem | undefined,
    pending: Delta | undefined,
    version: number,
    rank: number,
    now: number,
    deltaChars = 0,
  ): void {
    if (this.entries.has(key)) throw new Error(`restoreDelta: key ${JSON.stringify(key)} is already dirty`);
    const entry = new Entry(key, null, version, rank, now);
    this.bytes += key.length + deltaChars;
    entry.deltaChars = deltaChars;
    entry.relative = true;
    entry.delta = pending;
    entry.flight = flight;
    this.entries.set(key, entry);
    (flight === undefined ? this.freshQueues : this.retryQueues)[rank].push(entry);
    this.appendAge(entry);
  }

  /**
   * Takes up to `max` queued entries, highest priority first, and marks them in flight. Stops early once the
   * values taken hold `maxChars` characters of JSON (always taking at least one entry).
   */
  take(max: number, maxChars = Number.POSITIVE_INFINITY): FlushItem[] {
    const items: FlushItem[] = [];
    let chars = 0;
    for (let rank = 0; rank < 3 && items.length < max && chars < maxChars; rank++) {
      for (let q = 0; q < 2; q++) {
        const queue = q === 0 ? this.retryQueues[rank] : this.freshQueues[rank];
        while (queue.head !== null && items.length < max && chars < maxChars) {
          const entry = queue.head;
          queue.remove(entry);
          entry.inFlight = true;
          this.inFlightEntries++;
          if (this.holdOn) this.takenThisGeneration.add(entry.key);
          const item = this.snapshot(entry);
          chars += entry.key.length + (item.json === null ? 0 : item.json.length);
          items.push(item);
        }
      }
    }
    return items;
  }

  /** Takes one key out of the queue (for a write-through), or undefined if it is not queued. */
  takeKey(key: string): FlushItem | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined || entry.inFlight) return undefined;
    if (entry.queue !== null) entry.queue.remove(entry);
    entry.inFlight = true;
    this.inFlightEntries++;
    return this.snapshot(entry);
  }

  /**
   * What a flush of `entry` writes: its value, or for a relative entry the delta snapshot to retry (unchanged) or
   * the pending deltas, which become the flight (later deltas then gather anew).
   */
  private snapshot(entry: Entry): FlushItem {
    if (!entry.relative) return { key: entry.key, json: entry.json, version: entry.version, rank: entry.rank };
    if (entry.flight !== undefined) return entry.flight;
    const flight: FlushItem = { key: entry.key, json: null, version: entry.version, rank: entry.rank, delta: entry.delta };
    entry.flight = flight;
    entry.delta = undefined;
    entry.attempts = 0;
    entry.firstFailedAt = 0;
    return flight;
  }

  /**
   * The flush of `item` committed (or it was dead-lettered). The entry leaves the set only if `item.version`
   * is still its latest; otherwise a newer write arrived meanwhile and the entry is queued again.
   * Returns true if the entry became clean.
   */
  complete(item: FlushItem): boolean {
    const entry = this.entries.get(item.key);
    if (entry === undefined) return true;
    this.landed(entry);
    if (entry.flight === item) entry.flight = undefined;
    if (entry.version === item.version) {
      this.entries.delete(item.key);
      this.bytes -= entry.key.length + (entry.json === null ? 0 : entry.json.length) + entry.deltaChars;
      if (entry.queue !== null) entry.queue.remove(entry);
      if (entry.late) this.lateOrder.delete(entry);
      else this.removeAge(entry);
      return true;
    }
    // What is left unflushed is the writes made during the flight: the oldest of them sets the age.
    entry.since = entry.sinceSnapshot || entry.since;
    if (!entry.late) {
      this.removeAge(entry);
      entry.late = true;
      this.lateOrder.add(entry);
    }
    entry.rank = entry.rankSinceSnapshot < 3 ? entry.rankSinceSnapshot : entry.rank;
    entry.sinceSnapshot = 0;
    entry.rankSinceSnapshot = 3;
    this.queueFor(entry.key, entry.rank, true).push(entry);
    return false;
  }

  /** The flush of `item` did not commit: the entry stays dirty and is queued to be retried first. */
  release(item: FlushItem): void {
    const entry = this.entries.get(item.key);
    if (entry === undefined) return;
    this.landed(entry);
    // A delta snapshot whose outcome is unknown is written again as it was; unless a value replaced the deltas.
    if (entry.flight === item && !entry.relative) entry.flight = undefined;
    if (entry.rankSinceSnapshot < entry.rank) entry.rank = entry.rankSinceSnapshot;
    entry.sinceSnapshot = 0;
    entry.rankSinceSnapshot = 3;
    this.retryQueues[entry.rank].push(entry);
  }

  /**
   * Postgres rejected `item` (a permanent error) and it is still what its key must write: counts the attempt and
   * returns the attempts so far and when the first failed. Otherwise (a newer value superseded the rejected one, or
   * the key is gone) the item is released for the newer write and undefined returned. A delta is never superseded
   * by later deltas (they apply on top of it): it is retried and dead-lettered by itself, the later ones flush after.
   */
  recordRejection(item: FlushItem, now: number): { attempts: number; firstFailedAt: number } | undefined {
    const entry = this.entries.get(item.key);
    const superseded =
      item.delta === undefined ? entry?.version !== item.version : entry?.flight !== item || !entry.relative;
    if (entry === undefined || superseded) {
      this.release(item);
      return undefined;
    }
    entry.attempts++;
    if (entry.firstFailedAt === 0) entry.firstFailedAt = now;
    return { attempts: entry.attempts, firstFailedAt: entry.firstFailedAt };
  }

  /** When the oldest unflushed write was accepted (ms since epoch), or undefined when nothing is dirty. */
  oldestSince(): number | undefined {
    let oldest = this.ageHead?.since;
    for (const entry of this.lateOrder) {
      if (oldest === undefined || entry.since < oldest) oldest = entry.since;
    }
    return oldest;
  }

  /**
   * When the longest-waiting takeable entry (queued, not held) was first written, or undefined when none is. Reads
   * only the heads of the six queues, each in the order its entries joined it. Not exact like
   * {@link oldestSince}: an entry that joined a queue late (re-queued by complete(), moved up by a priority
   * upgrade) keeps its older `since` behind newer heads. Cheap enough for the flusher to call after every batch.
   */
  oldestQueuedSince(): number | undefined {
    let oldest: number | undefined;
    for (let rank = 0; rank < 3; rank++) {
      const retry = this.retryQueues[rank].head;
      if (retry !== null && (oldest === undefined || retry.since < oldest)) oldest = retry.since;
      const fresh = this.freshQueues[rank].head;
      if (fresh !== null && (oldest === undefined || fresh.since < oldest)) oldest = fresh.since;
    }
    return oldest;
  }

  /** Key -> version of every dirty entry: what a `flush()` called now must see persisted. */
  snapshotVersions(): Map<string, number> {
    const versions = new Map<string, number>();
    for (const [key, entry] of this.entries) versions.set(key, entry.version);
    return versions;
  }

  /** Queued counts per priority name (for stats). */
  queuedByPriority(): Record<WriteBackPriority, number> {
    const counts = { high: 0, normal: 0, low: 0 };
    for (let rank = 0; rank < 3; rank++) counts[PRIORITY_NAMES[rank]] = this.queuedAt(rank);
    return counts;
  }

  /** Entries of one rank waiting to be taken (fresh, to retry or held). */
  private queuedAt(rank: number): number {
    return this.retryQueues[rank].size + this.freshQueues[rank].size + this.holdQueues[rank].size;
  }

  /**
   * Where a (re-)queued entry waits: held if holding is on, it is not `high`, and take() took its key in this
   * generation (`mayBeTaken` false rules that out without a lookup); else its fresh queue.
   */
  private queueFor(key: string, rank: number, mayBeTaken: boolean): EntryQueue {
    if (mayBeTaken && this.holdOn && rank > 0 && this.takenThisGeneration.has(key)) return this.holdQueues[rank];
    return this.freshQueues[rank];
  }

  /** The entry is no longer in flight (no-op if it was not). */
  private landed(entry: Entry): void {
    if (!entry.inFlight) return;
    entry.inFlight = false;
    this.inFlightEntries--;
  }

  private appendAge(entry: Entry): void {
    entry.agePrev = this.ageTail;
    entry.ageNext = null;
    if (this.ageTail === null) this.ageHead = entry;
    else this.ageTail.ageNext = entry;
    this.ageTail = entry;
  }

  private removeAge(entry: Entry): void {
    const { agePrev: prev, ageNext: next } = entry;
    if (prev === null) this.ageHead = next;
    else prev.ageNext = next;
    if (next === null) this.ageTail = prev;
    else next.agePrev = prev;
    entry.agePrev = null;
    entry.ageNext = null;
  }
}
