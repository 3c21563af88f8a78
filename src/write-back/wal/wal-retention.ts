/** One segment file of the log, as the retention bookkeeping sees it. */
export class WalSegment {
  /** Bytes of records in the file. */
  bytes = 0;
  /** Records here that replay still needs: the newest record of their key, not yet settled. */
  live = 0;
  /** Synced, closed and never written again: only sealed segments are deleted. */
  sealed = false;
  deleted = false;
  /** Segments that must be deleted before this one (see `WalRetention`). */
  readonly pinnedBy = new Set<WalSegment>();
  /** Segments this one pins. */
  readonly pinning = new Set<WalSegment>();
  /** Keys whose newest record moved into this segment (possibly since moved on): dropped with the segment. */
  readonly heads: string[] = [];
  /**
   * Sequence number of the latest record in another segment that superseded a record here: until that record is
   * durable, a crash could lose it, and this segment's older record is the key's last logged value.
   */
  supersededBy = 0;

  constructor(
    readonly id: number,
    readonly file: string,
  ) {}
}

interface KeyState {
  /** Newest version of the key in the log. */
  version: number;
  /** Highest version the flusher settled; -1 when none. */
  settled: number;
  /** Segment holding the newest record. */
  segment: WalSegment;
}

/**
 * Decides which segments the log still needs. Replay keeps the newest record per key, so only the newest record
 * of each key matters, and only until it is settled (committed or dead-lettered). A sealed segment holding no such
 * record is deleted, with one ordering rule: when a key's newest record sits in segment B and an older record of it
 * in an earlier segment A, B is deleted only after A. Deleting B first would let a restart replay A's stale value
 * as if it were the latest. No I/O here: `onDelete` is told which segment files to remove, in a safe order.
 */
export class WalRetention {
  private readonly keys = new Map<string, KeyState>();
  private pendingRecords = 0;
  /** Sequence number of the last record tracked; records are numbered from 1 in append order. */
  private tracked = 0;
  /** Every record up to this sequence number is on disk (fdatasynced). */
  private durable = 0;
  /** Segments that could go but for a superseding record not yet durable. */
  private readonly waitingForDurability = new Set<WalSegment>();

  constructor(private readonly onDelete: (segment: WalSegment) => void) {}

  /** Newest records not yet settled. */
  get pending(): number {
    return this.pendingRecords;
  }

  /** Sequence number of the last record `track` accepted. */
  get lastSequence(): number {
    return this.tracked;
  }

  /**
   * Notes a record of `key` at `version` going into `segment` (always the newest segment) and numbers it
   * (`lastSequence`). Returns false when the record is redundant, because the log already holds this or a higher
   * version of the key: replay would never use it, so it need not be written.
   */
  track(key: string, version: number, segment: WalSegment): boolean {
    const state = this.keys.get(key);
    if (state !== undefined && version <= state.version) return false;
    this.tracked++;
    if (state === undefined) {
      this.keys.set(key, { version, settled: -1, segment });
      this.addHead(key, segment);
    } else {
      this.moveHead(key, state, version, segment);
    }
    return true;
  }

  /** Every record up to `sequence` is fdatasynced: segments it supersedes may go. */
  markDurable(sequence: number): void {
    if (sequence <= this.durable) return;
    this.durable = sequence;
    for (const segment of this.waitingForDurability) {
      if (segment.supersededBy <= sequence) {
        this.waitingForDurability.delete(segment);
        this.check(segment);
      }
    }
  }

  /**
   * Like `track`, for records replayed at start-up, in log order. A record at least as new as the key's newest
   * becomes its newest (equal versions: the later record wins). An older record after the newest one only happens
   * if versions went backwards; the newest record's segment then outlives the older one's. Returns whether the
   * record is now the key's newest.
   */
  trackReplayed(key: string, version: number, segment: WalSegment): boolean {
    const state = this.keys.get(key);
    if (state === undefined) {
      this.keys.set(key, { version, settled: -1, segment });
      this.addHead(key, segment);
      return true;
    }
    if (version < state.version) {
      if (segment !== state.segment) pin(state.segment, segment);
      return false;
    }
    // Replayed records are on disk already: superseding them needs no sync.
    this.moveHead(key, state, version, segment, 0);
    return true;
  }

  /** Every record of `key` at or below `version` is in Postgres (or the dead-letter table). */
  settle(key: string, version: number): void {
    const state = this.keys.get(key);
    if (state === undefined || version <= state.settled) return;
    const wasLive = state.version > state.settled;
    state.settled = version;
    if (wasLive && state.version <= version) {
      state.segment.live--;
      this.pendingRecords--;
      this.check(state.segment);
    }
  }

  /** `segment` was synced and closed: from now on it may be deleted. */
  seal(segment: WalSegment): void {
    segment.sealed = true;
    this.check(segment);
  }

  private addHead(key: string, segment: WalSegment): void {
    segment.live++;
    segment.heads.push(key);
    this.pendingRecords++;
  }

  private moveHead(key: string, state: KeyState, version: number, segment: WalSegment, sequence = this.tracked): void {
    const previous = state.segment;
    const previousLive = state.version > state.settled;
    state.version = version;
    if (previous !== segment) {
      state.segment = segment;
      segment.heads.push(key);
      pin(segment, previous);
      // A settled record needs no successor on disk: Postgres has it.
      if (previousLive && sequence > previous.supersededBy) previous.supersededBy = sequence;
    }
    segment.live++;
    this.pendingRecords++;
    if (previousLive) {
      previous.live--;
      this.pendingRecords--;
      this.check(previous);
    }
  }

  private check(segment: WalSegment): void {
    if (!segment.sealed || segment.deleted || segment.live > 0 || segment.pinnedBy.size > 0) return;
    if (segment.supersededBy > this.durable) {
      this.waitingForDurability.add(segment);
      return;
    }
    this.delete(segment);
  }

  private delete(segment: WalSegment): void {
    segment.deleted = true;
    for (const key of segment.heads) {
      if (this.keys.get(key)?.segment === segment) this.keys.delete(key);
    }
    segment.heads.length = 0;
    this.onDelete(segment);
    for (const later of segment.pinning) {
      later.pinnedBy.delete(segment);
      this.check(later);
    }
    segment.pinning.clear();
  }
}

/** `segment` may be deleted only once `first` is. */
function pin(segment: WalSegment, first: WalSegment): void {
  if (first.deleted || segment === first) return;
  segment.pinnedBy.add(first);
  first.pinning.add(segment);
}
