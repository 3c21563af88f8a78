// The Set-of-keys DirtySet that the linked-list one replaced (for speed), kept as the reference model its
// randomized test compares against: same operations, same answers.
import type { DirtyEntry } from '../../src/write-back/cache/dirty-set.js';
import type { FlushItem } from '../../src/write-back/model/types.js';
import type { WriteBackPriority } from '../../src/write-back/write-back.options.js';

const PRIORITY_NAMES: readonly WriteBackPriority[] = ['high', 'normal', 'low'];

export class ReferenceDirtySet {
  private readonly entries = new Map<string, DirtyEntry>();
  /** Per rank: keys whose flush failed transiently (retried first), then fresh keys. Insertion-ordered. */
  private readonly retryQueues: Set<string>[] = [new Set(), new Set(), new Set()];
  private readonly freshQueues: Set<string>[] = [new Set(), new Set(), new Set()];
  /** Per rank: keys written again after being taken in this generation, while holding (never `high`). */
  private readonly holdQueues: Set<string>[] = [new Set(), new Set(), new Set()];
  private readonly taken = new Set<string>();
  holding = false;
  private readonly inFlight = new Set<string>();
  /**
   * For the flush lag: keys whose `since` is their creation time, in creation order (so the first is the
   * oldest), and keys whose `since` was moved forward by complete() (few: scanned).
   */
  private readonly ageOrder = new Set<string>();
  private readonly lateOrder = new Set<string>();

  get size(): number {
    return this.entries.size;
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Entries waiting to be taken (dirty and not in flight). */
  get queuedCount(): number {
    return this.entries.size - this.inFlight.size;
  }

  get heldCount(): number {
    return this.holdQueues[1].size + this.holdQueues[2].size;
  }

  get takeableCount(): number {
    return this.queuedCount - this.heldCount;
  }

  setHolding(on: boolean): void {
    if (on === this.holding) return;
    this.holding = on;
    if (!on) {
      this.releaseHeld();
      this.taken.clear();
    }
  }

  nextGeneration(): void {
    this.releaseHeld();
    this.taken.clear();
  }

  private releaseHeld(): void {
    for (let rank = 1; rank < 3; rank++) {
      const fresh = [...this.holdQueues[rank], ...this.freshQueues[rank]];
      this.holdQueues[rank].clear();
      this.freshQueues[rank].clear();
      for (const key of fresh) this.freshQueues[rank].add(key);
    }
  }

  private queueFor(key: string, rank: number, wasClean: boolean): Set<string> {
    return wasClean && this.holding && rank > 0 && this.taken.has(key) ? this.holdQueues[rank] : this.freshQueues[rank];
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
  write(key: string, json: string | null, version: number, rank: number, now: number, wasClean = false): boolean {
    const entry = this.entries.get(key);
    if (entry === undefined) {
      this.entries.set(key, {
        key,
        json,
        relative: false,
        delta: undefined,
        flight: undefined,
        version,
        rank,
        since: now,
        sinceSnapshot: 0,
        rankSinceSnapshot: 3,
        inFlight: false,
        attempts: 0,
        firstFailedAt: 0,
      });
      this.queueFor(key, rank, wasClean).add(key);
      this.ageOrder.add(key);
      return false;
    }
    entry.json = json;
    entry.version = version;
    entry.attempts = 0;
    entry.firstFailedAt = 0;
    if (entry.inFlight) {
      if (entry.sinceSnapshot === 0) entry.sinceSnapshot = now;
      if (rank < entry.rankSinceSnapshot) entry.rankSinceSnapshot = rank;
      return false;
    }
    if (rank < entry.rank) {
      if (this.retryQueues[entry.rank].delete(key)) this.retryQueues[rank].add(key);
      else if (this.holdQueues[entry.rank].delete(key)) (rank > 0 ? this.holdQueues : this.freshQueues)[rank].add(key);
      else if (this.freshQueues[entry.rank].delete(key)) this.freshQueues[rank].add(key);
      entry.rank = rank;
    }
    return true;
  }

  /**
   * Takes up to `max` queued entries, highest priority first, and marks them in flight. Stops early once the
   * values taken hold `maxChars` characters of JSON (always taking at least one entry).
   */
  take(max: number, maxChars = Number.POSITIVE_INFINITY): FlushItem[] {
    const items: FlushItem[] = [];
    let chars = 0;
    for (let rank = 0; rank < 3 && items.length < max && chars < maxChars; rank++) {
      for (const queue of [this.retryQueues[rank], this.freshQueues[rank]]) {
        for (const key of queue) {
          if (items.length >= max || chars >= maxChars) break;
          queue.delete(key);
          const entry = this.entries.get(key)!;
          entry.inFlight = true;
          this.inFlight.add(key);
          if (this.holding) this.taken.add(key);
          chars += key.length + (entry.json?.length ?? 0);
          items.push({ key, json: entry.json, version: entry.version, rank: entry.rank });
        }
      }
    }
    return items;
  }

  /** Takes one key out of the queue (for a write-through), or undefined if it is not queued. */
  takeKey(key: string): FlushItem | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined || entry.inFlight) return undefined;
    this.retryQueues[entry.rank].delete(key);
    this.freshQueues[entry.rank].delete(key);
    this.holdQueues[entry.rank].delete(key);
    entry.inFlight = true;
    this.inFlight.add(key);
    return { key, json: entry.json, version: entry.version, rank: entry.rank };
  }

  /**
   * The flush of `item` committed (or it was dead-lettered). The entry leaves the set only if `item.version`
   * is still its latest; otherwise a newer write arrived meanwhile and the entry is queued again.
   * Returns true if the entry became clean.
   */
  complete(item: FlushItem): boolean {
    const entry = this.entries.get(item.key);
    if (entry === undefined) return true;
    this.inFlight.delete(item.key);
    entry.inFlight = false;
    if (entry.version === item.version) {
      this.entries.delete(item.key);
      this.ageOrder.delete(item.key);
      this.lateOrder.delete(item.key);
      return true;
    }
    // What is left unflushed is the writes made during the flight: the oldest of them sets the age.
    entry.since = entry.sinceSnapshot || entry.since;
    if (this.ageOrder.delete(item.key)) this.lateOrder.add(item.key);
    entry.rank = entry.rankSinceSnapshot < 3 ? entry.rankSinceSnapshot : entry.rank;
    entry.sinceSnapshot = 0;
    entry.rankSinceSnapshot = 3;
    this.queueFor(item.key, entry.rank, true).add(item.key);
    return false;
  }

  /** The flush of `item` did not commit: the entry stays dirty and is queued to be retried first. */
  release(item: FlushItem): void {
    const entry = this.entries.get(item.key);
    if (entry === undefined) return;
    this.inFlight.delete(item.key);
    entry.inFlight = false;
    if (entry.rankSinceSnapshot < entry.rank) entry.rank = entry.rankSinceSnapshot;
    entry.sinceSnapshot = 0;
    entry.rankSinceSnapshot = 3;
    this.retryQueues[entry.rank].add(item.key);
  }

  /** When the oldest unflushed write was accepted (ms since epoch), or undefined when nothing is dirty. */
  oldestSince(): number | undefined {
    let oldest: number | undefined;
    for (const key of this.ageOrder) {
      oldest = this.entries.get(key)!.since;
      break;
    }
    for (const key of this.lateOrder) {
      const since = this.entries.get(key)!.since;
      if (oldest === undefined || since < oldest) oldest = since;
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
    for (let rank = 0; rank < 3; rank++) {
      counts[PRIORITY_NAMES[rank]] = this.retryQueues[rank].size + this.freshQueues[rank].size + this.holdQueues[rank].size;
    }
    return counts;
  }
}
