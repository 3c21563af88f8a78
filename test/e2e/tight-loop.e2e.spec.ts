import { afterEach, describe, expect, it } from 'vitest';
import { tableRows } from '../support/database.js';
import { tempDir } from '../support/temp-dir.js';
import { until } from '../support/wait.js';
import { startWriteBack, type WriteBackTestApp } from '../support/write-back-app.js';

/**
 * `for (...) await cache.set(...)` (a batch import, a script) resolves every call on the fast path without the
 * event loop turning. Once a flush is due, `set` yields one turn, so the flush timer runs inside such a loop.
 */
describe('a tight await set() loop does not starve the flusher', () => {
  let t: WriteBackTestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('starts the first flush within one batch of writes after batchSize are queued', async () => {
    const batchSize = 1000;
    t = await startWriteBack({ autoFlush: true, batchSize, flushIntervalMs: 3_600_000, maxDirtyEntries: 100_000 });
    const service = t.service;
    let firstFlushAt: number | undefined;
    for (let i = 0; i < 20_000; i++) {
      await service.set(`tight:${i}`, { i });
      if (firstFlushAt === undefined && service.stats().inFlight > 0) firstFlushAt = i + 1;
    }
    expect(firstFlushAt, 'a flush started during the loop').toBeDefined();
    expect(firstFlushAt!).toBeGreaterThanOrEqual(batchSize);
    expect(firstFlushAt!).toBeLessThanOrEqual(2 * batchSize);
    // And it got somewhere: batches committed while the loop ran, not only after it.
    await until(async () => (await tableRows(t!.sql)).size >= batchSize, 10_000, 'the first batch in the table');
  });

  it('also with durability wal-async, whose appends resolve at once too', async () => {
    const batchSize = 1000;
    const walDir = await tempDir('write-back-tight-loop-');
    t = await startWriteBack({ autoFlush: true, batchSize, flushIntervalMs: 3_600_000, maxDirtyEntries: 100_000, durability: 'wal-async', walDir });
    const service = t.service;
    let firstFlushAt: number | undefined;
    for (let i = 0; i < 20_000; i++) {
      await service.set(`wal-tight:${i}`, { i });
      if (firstFlushAt === undefined && service.stats().inFlight > 0) firstFlushAt = i + 1;
    }
    expect(firstFlushAt, 'a flush started during the loop').toBeDefined();
    expect(firstFlushAt!).toBeLessThanOrEqual(2 * batchSize);
  });

  it('starts a flush when flushIntervalMs passes during the loop, with fewer than batchSize queued per interval', async () => {
    t = await startWriteBack({ autoFlush: true, batchSize: 50_000, flushIntervalMs: 50, maxDirtyEntries: 100_000 });
    const service = t.service;
    const started = Date.now();
    let sawFlush = false;
    // Writes until 400 ms have passed on the wall clock: several intervals, all inside the loop.
    for (let i = 0; Date.now() - started < 400 && i < 90_000; i++) {
      await service.set(`interval:${i % 30_000}`, i);
      if (!sawFlush && (service.stats().inFlight > 0 || service.stats().flushes > 0)) sawFlush = true;
    }
    expect(sawFlush, 'the interval tick ran inside the loop').toBe(true);
  });

  it('keeps resolving at once while no flush is due (autoFlush off: never)', async () => {
    t = await startWriteBack({ autoFlush: false, batchSize: 10 });
    let turned = false;
    setImmediate(() => (turned = true));
    for (let i = 0; i < 1000; i++) await t.service.set(`still:${i}`, i);
    expect(turned, 'no set() yielded to the event loop').toBe(false);
  });
});
