/** Low bits of every version that hold the issuing instance's id. */
export const INSTANCE_ID_BITS = 8;
/** Instance ids are 0 ..= MAX_INSTANCE_ID. */
export const MAX_INSTANCE_ID = (1 << INSTANCE_ID_BITS) - 1;
const UNIT = 1 << INSTANCE_ID_BITS;

/**
 * Issues write versions: a hybrid logical clock. A version is the wall clock in microseconds with its low
 * {@link INSTANCE_ID_BITS} bits replaced by this instance's id, lifted past every version the instance has observed
 * (rows it loaded, notifications of other instances' commits, its own commits, rows the version guard kept), so:
 *
 * - versions of different instances never collide (different low bits) and compare by time;
 * - a write made after observing a version is above it, even when the instance that issued that version runs its
 *   clock seconds ahead: a causally later write wins in Postgres's version guard;
 * - the clock never moves back, even when the wall clock does.
 *
 * Versions of one key strictly grow (the caller passes the key's current version as `floor`), but two keys may get
 * the same version: the clock does not advance per write, so writing faster than one version per
 * 2^INSTANCE_ID_BITS µs (256 µs) does not drag it ahead of the wall clock. Only a single key written more often
 * than that runs ahead, by one unit per write, and the clock follows it once it observes its commit.
 *
 * Exactness: versions stay of the magnitude of microseconds since the epoch, below 2^53 until the year 2255, so they
 * are exact as JS numbers (no BigInt on the hot path) and as Postgres bigint.
 */
export class HybridClock {
  private observed = 0;
  private last = 0;

  constructor(
    readonly instanceId: number,
    /** The wall clock, in ms since the epoch (fractions used). */
    public nowMs: () => number = Date.now,
  ) {
    if (!Number.isInteger(instanceId) || instanceId < 0 || instanceId > MAX_INSTANCE_ID) {
      throw new RangeError(`instance id must be an integer from 0 to ${MAX_INSTANCE_ID}, got ${instanceId}`);
    }
  }

  /** The highest version observed (0 before any). Every version issued from now on is above it. */
  get highestObserved(): number {
    return this.observed;
  }

  /** The last version issued (0 before the first). */
  get lastIssued(): number {
    return this.last;
  }

  /** Lifts the clock past `version`: every later version is above it. */
  observe(version: number): void {
    if (version > this.observed) this.observed = version;
  }

  /**
   * A version above `floor` (the key's current version, 0 if none is known) and above every observed version, not
   * below the last one issued, at or above the wall clock, with this instance's id in the low bits.
   * `nowMs`: the caller's reading of the same clock, when it has one (saves a second read).
   */
  next(floor = 0, nowMs = this.nowMs()): number {
    let at = Math.floor(nowMs * 1000);
    if (floor >= at) at = floor + 1;
    if (this.observed >= at) at = this.observed + 1;
    if (this.last > at) at = this.last;
    // The smallest version >= at whose low bits are the instance id.
    let version = at - (at % UNIT) + this.instanceId;
    if (version < at) version += UNIT;
    this.last = version;
    return version;
  }
}

/** The instance id in the low bits of `version`. */
export function versionInstanceId(version: number): number {
  return version % UNIT;
}
