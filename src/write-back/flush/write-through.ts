import type { FlushOutcome } from '../model/types.js';
import { isLostConnection } from '../store/error-classifier.js';
import type { BatchWriter } from './batch-writer.js';
import type { FlushQueue } from './flush-queue.js';
import type { FlushWaiters } from './flush-waiters.js';

/** How a write made now (outside the flush order) ended; `queued` with the error when Postgres did not take it. */
export interface WriteThroughResult {
  outcome: FlushOutcome | 'superseded' | 'queued';
  error?: unknown;
}

/**
 * Writes one key now, outside the round order (`writeThrough`, a dead-letter replay): waits for a flush of the key
 * already in the air, then writes it as a batch of its own. The entry stays dirty when Postgres did not take it.
 */
export async function writeThrough(
  queue: FlushQueue,
  writer: BatchWriter,
  waiters: FlushWaiters,
  key: string,
): Promise<WriteThroughResult> {
  const first = await writeOnce(queue, writer, waiters, key);
  // A pooled connection that died while idle (a restart, a failover, pg_terminate_backend) fails the first
  // statement sent on it. The write is guarded by version, so writing it again on a fresh connection is safe:
  // once, so a caller waiting for a commit gets one instead of an error; a database that is really down
  // still fails it.
  if (first.outcome === 'queued' && isLostConnection(first.error)) return writeOnce(queue, writer, waiters, key);
  return first;
}

async function writeOnce(queue: FlushQueue, writer: BatchWriter, waiters: FlushWaiters, key: string): Promise<WriteThroughResult> {
  for (;;) {
    const entry = queue.get(key);
    if (entry === undefined) return { outcome: 'committed' };
    if (!entry.inFlight) break;
    await writer.whenIdle();
  }
  const item = queue.takeKey(key)!;
  const waiter = waiters.add(new Map([[key, item.version]]));
  let failure: unknown;
  try {
    await writer.write([item], (error) => (failure = error));
  } finally {
    waiters.remove(waiter);
  }
  if (waiter.superseded > 0) return { outcome: 'superseded' };
  if (waiter.committed > 0) return { outcome: 'committed' };
  if (waiter.deadLettered > 0) return { outcome: 'deadLettered', error: failure };
  return { outcome: 'queued', error: failure };
}
