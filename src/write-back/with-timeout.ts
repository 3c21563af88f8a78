/**
 * `work`, or a rejection with `onTimeout()` if it has not settled within `timeoutMs` (no limit when undefined).
 * The timer is cleared either way; `work` itself is not cancelled.
 */
export function withTimeout<T>(work: Promise<T>, timeoutMs: number | undefined, onTimeout: () => Error): Promise<T> {
  if (timeoutMs === undefined) return work;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), timeoutMs);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
