import type { Delta } from './delta.js';

/**
 * The data the layers pass to each other, at the bottom of the imports: the service, the write pipeline, the
 * cache, the flusher and the store all speak in these types, and this file imports nothing of theirs.
 */

/** The immutable snapshot of a dirty entry that one flush writes. */
export interface FlushItem {
  readonly key: string;
  /** The value's JSON text; null for a delete, or for a delta (see `delta`). */
  readonly json: string | null;
  readonly version: number;
  readonly rank: number;
  /** A change to apply to the stored value, exactly once (the ledger in Postgres knows `origin` and `version`). */
  readonly delta?: Delta;
  /** Whose ledger entry guards the delta: the instance by default; a dead letter's own when replayed. */
  readonly origin?: string;
}

/** A row as Postgres holds it: its JSON text and version. */
export interface StoredRow {
  json: string;
  version: number;
}

/** What the flusher records about a row Postgres kept rejecting. */
export interface DeadLetterFailure {
  code: string | undefined;
  message: string;
  attempts: number;
  firstFailedAt: Date;
  lastFailedAt: Date;
}

/** Where the flusher writes. Implemented by WriteBackStore; tests may pass their own. */
export interface FlushSink {
  /** Resolves with the keys the version guard skipped (Postgres holds a newer version), if it reports them. */
  writeBatch(items: readonly FlushItem[]): Promise<readonly string[] | void>;
  insertDeadLetter(item: FlushItem, failure: DeadLetterFailure): Promise<void>;
}

/** How the flush of one item ended for good. */
export type FlushOutcome = 'committed' | 'deadLettered';

/** An item that left the in-flight state for good. */
export interface FlushCompletion {
  item: FlushItem;
  outcome: FlushOutcome;
  /** The item's version was still the key's latest: the key is clean now. */
  clean: boolean;
  /** Committed, but the version guard skipped the row: Postgres already held a newer version of the key. */
  superseded: boolean;
}

export interface FlushReport {
  /** Entries that were dirty when flush() was called. */
  requested: number;
  /** Of those, committed (at their version or a newer one). */
  committed: number;
  /** Of those, moved to the dead-letter table. */
  deadLettered: number;
  durationMs: number;
}

export type CircuitState = 'closed' | 'open' | 'half-open';

export interface FlushCounters {
  flushes: number;
  flushedEntries: number;
  flushErrors: number;
  retries: number;
  deadLettered: number;
  flushDurationMsTotal: number;
  flushDurationMsMax: number;
}

export interface FlushError {
  code: string | undefined;
  message: string;
  at: Date;
}

/** What the flusher shows of itself: counters and state, for stats, health and the shutdown log. */
export interface FlushStatus {
  readonly counters: Readonly<FlushCounters>;
  readonly lastFlushAt: Date | undefined;
  readonly lastError: FlushError | undefined;
  /** When the timer last ticked (ms since epoch): liveness. */
  readonly lastTickAt: number;
  /** Batch writers running now: 0 when idle, 1 while the flusher keeps up, up to `flushConcurrency` when behind. */
  readonly workers: number;
  readonly isTimerRunning: boolean;
  circuitState(): CircuitState;
}

/** One timer slot the flusher re-arms itself (wired to SchedulerRegistry by the module). */
export interface FlushTimer {
  set(callback: () => void, delayMs: number): void;
  clear(): void;
}

export interface FlusherLogger {
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}
