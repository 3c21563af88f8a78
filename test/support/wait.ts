/**
 * Waits until `condition` holds, polling every 5 ms on the event loop (no fixed sleeps). Fails after `timeoutMs`
 * with `what` in the message (a function is called then, so it can show the state at the time of failure).
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what: string | (() => string) = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    await sleep(5);
  }
}

/** A fixed pause: for pacing load or timing an outage, or to show that something does not happen. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
