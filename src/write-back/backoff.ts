/**
 * Exponential backoff with "equal jitter": half of the capped exponential delay is fixed, half random, so
 * retries from many pods spread out but never fire at once. `failures` counts from 1.
 */
export function backoffDelay(failures: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(failures - 1, 0), 30);
  const capped = Math.min(maxMs, baseMs * 2 ** exponent);
  return Math.round(capped / 2 + random() * (capped / 2));
}
