/**
 * Issues write versions: microseconds since the Unix epoch, strictly increasing within the process.
 * Being time-based, versions from different replicas compare (last writer by wall clock wins); `floor`
 * lifts a version above one already seen for the key, so a key's versions grow even under clock skew.
 * Microsecond values stay below 2^53 until the year 2255, so they are exact as JS numbers.
 */
export class VersionClock {
  private last = 0;

  constructor(private readonly nowMs: () => number = Date.now) {}

  /** The last version issued (0 before the first): every later one is above it. */
  get lastIssued(): number {
    return this.last;
  }

  /** `nowMs`: the caller's reading of the same clock, when it has one (saves a second read). */
  next(floor = 0, nowMs = this.nowMs()): number {
    const candidate = Math.max(Math.floor(nowMs * 1000), floor + 1, this.last + 1);
    this.last = candidate;
    return candidate;
  }
}
