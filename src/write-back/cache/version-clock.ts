/**
 * Issues write versions: microseconds since the Unix epoch, strictly increasing within the process.
 * Being time-based, versions from different replicas compare (last writer by wall clock wins); `floor`
 * lifts a version above one already seen for the key, so a key's versions grow even under clock skew.
 * Microsecond values stay below 2^53 until the year 2255, so they are exact as JS numbers.
 */
export class VersionClock {
  private last = 0;

  constructor(private readonly nowMs: () => number = Date.now) {}

  next(floor = 0): number {
    const candidate = Math.max(Math.floor(this.nowMs() * 1000), floor + 1, this.last + 1);
    this.last = candidate;
    return candidate;
  }
}
