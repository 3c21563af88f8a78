import type { DirtyEntry } from '../cache/dirty-set.js';
import type { FlushItem, FlushOutcome } from '../model.js';

/**
 * What the flusher may do to the dirty entries: the narrow port the write pipeline (their owner) hands it. The
 * flusher takes items, puts back the ones that did not commit, counts rejections, and reports each item that
 * left the in-flight state for good; the pipeline updates the cache and the write-ahead log from that report.
 */
export interface FlushQueue {
  /** Dirty entries, in flight included. */
  readonly size: number;
  /** Queued entries a batch can take now (not in flight, not held). */
  readonly takeableCount: number;
  readonly queuedHighCount: number;
  get(key: string): Readonly<DirtyEntry> | undefined;
  has(key: string): boolean;
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
