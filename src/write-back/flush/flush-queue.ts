import type { DirtyEntry, DirtySet, DirtyView } from '../cache/dirty-set.js';
import type { FlushItem, FlushOutcome } from '../model/types.js';

/**
 * What the flusher may do to the dirty entries: the narrow port the write pipeline (their owner) hands it. The
 * flusher takes items, puts back the ones that did not commit, counts rejections, and reports each item that
 * left the in-flight state for good; the pipeline updates the cache and the write-ahead log from that report.
 */
export interface FlushQueue extends Pick<DirtyView, 'size' | 'takeableCount' | 'get' | 'has'> {
  readonly queuedHighCount: number;
  oldestQueuedSince(): number | undefined;
  /** Key -> version of every dirty entry: what a `flush()` called now must see persisted. */
  snapshotVersions(): Map<string, number>;
  take(max: number, maxChars: number): FlushItem[];
  takeKey(key: string): FlushItem | undefined;
  /** The item did not commit: queued again, to be retried first. */
  release(item: FlushItem): void;
  /** See DirtySet.recordRejection: undefined when a newer write superseded the item (which is then released). */
  recordRejection(item: FlushItem, now: number): { attempts: number; firstFailedAt: number } | undefined;
  /** The item is in Postgres or in the dead-letter table: its key is clean unless written again meanwhile. */
  complete(item: FlushItem, outcome: FlushOutcome, superseded: boolean): void;
  /** Hot-key holding (see DirtySet and HotKeyHolding): on or off, and a new generation at each interval tick. */
  setHolding(on: boolean): void;
  nextGeneration(): void;
}

/** The port over the write pipeline's DirtySet: the set's own methods, with each completion reported to `onComplete`. */
export class DirtySetQueue implements FlushQueue {
  constructor(
    private readonly dirty: DirtySet,
    private readonly onComplete: (item: FlushItem, outcome: FlushOutcome, clean: boolean, superseded: boolean) => void,
  ) {}

  get size(): number {
    return this.dirty.size;
  }

  get takeableCount(): number {
    return this.dirty.takeableCount;
  }

  get queuedHighCount(): number {
    return this.dirty.queuedHighCount;
  }

  get(key: string): Readonly<DirtyEntry> | undefined {
    return this.dirty.get(key);
  }

  has(key: string): boolean {
    return this.dirty.has(key);
  }

  oldestQueuedSince(): number | undefined {
    return this.dirty.oldestQueuedSince();
  }

  snapshotVersions(): Map<string, number> {
    return this.dirty.snapshotVersions();
  }

  take(max: number, maxChars: number): FlushItem[] {
    return this.dirty.take(max, maxChars);
  }

  takeKey(key: string): FlushItem | undefined {
    return this.dirty.takeKey(key);
  }

  release(item: FlushItem): void {
    this.dirty.release(item);
  }

  recordRejection(item: FlushItem, now: number): { attempts: number; firstFailedAt: number } | undefined {
    return this.dirty.recordRejection(item, now);
  }

  complete(item: FlushItem, outcome: FlushOutcome, superseded: boolean): void {
    this.onComplete(item, outcome, this.dirty.complete(item), superseded);
  }

  setHolding(on: boolean): void {
    this.dirty.setHolding(on);
  }

  nextGeneration(): void {
    this.dirty.nextGeneration();
  }
}
