import { afterEach, describe, expect, it } from 'vitest';
import { WriteBackFlushTimeoutError, WriteBackHealthIndicator } from '../../src/write-back/index.js';
import { NEEDS_SERVER, isPglite, lockTable } from '../support/database.js';
import { until } from '../support/wait.js';
import { startWriteBack, type WriteBackTestApp } from '../support/write-back-app.js';

describe('health indicator', () => {
  let t: WriteBackTestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('readiness goes down past dirtyHighWatermark and comes back after a flush', async () => {
    t = await startWriteBack({ maxDirtyEntries: 10, dirtyHighWatermark: 3 });
    const health = t.app.get(WriteBackHealthIndicator);
    for (let i = 0; i < 3; i++) await t.service.set(`h${i}`, i);
    expect((await health.isReady()).writeBack.status).toBe('up');
    await t.service.set('h3', 3);
    const down = await health.isReady();
    expect(down.writeBack).toMatchObject({ status: 'down', dirty: 4, circuit: 'closed', deadLetters: 0 });
    expect(String(down.writeBack.reasons)).toContain('dirtyHighWatermark');
    await t.service.flush();
    const up = await health.isReady();
    expect(up.writeBack).toMatchObject({ status: 'up', dirty: 0, flushLagMs: 0, inFlight: 0 });
    expect(up.writeBack.lastFlushAt).toEqual(expect.any(String));
  });

  it('readiness goes down when the oldest unflushed write is older than maxFlushLagMs', async () => {
    t = await startWriteBack({ maxFlushLagMs: 20 });
    const health = t.app.get(WriteBackHealthIndicator);
    await t.service.set('lag', 1);
    await until(() => t!.service.stats().flushLagMs > 20, 2000, 'flush lag to grow');
    const down = await health.isReady();
    expect(down.writeBack.status).toBe('down');
    expect(String(down.writeBack.reasons)).toContain('maxFlushLagMs');
    await t.service.flush();
    expect((await health.isReady()).writeBack.status).toBe('up');
  });

  it('an open circuit turns readiness down but never liveness; both recover when Postgres does', async () => {
    t = await startWriteBack({ circuitBreakerThreshold: 2, retryBaseDelayMs: 5, retryMaxDelayMs: 20, autoFlush: true, flushIntervalMs: 10 });
    const health = t.app.get(WriteBackHealthIndicator);
    // Hide the table: every flush now fails with 42P01, a transient error (never dead-lettered).
    await t.sql.query('ALTER TABLE write_back_entries RENAME TO write_back_entries_hidden');
    await t.service.set('c', 1);
    await expect(t.service.flush({ timeoutMs: 300 })).rejects.toBeInstanceOf(WriteBackFlushTimeoutError);
    await until(() => t!.service.stats().circuit === 'open', 2000, 'the circuit to open');
    const ready = await health.isReady();
    expect(ready.writeBack).toMatchObject({ status: 'down', circuit: 'open' });
    expect(ready.writeBack.lastError).toMatchObject({ code: '42P01' });
    expect(health.isAlive().writeBack.status).toBe('up');
    expect(t.service.stats()).toMatchObject({ deadLettered: 0, dirty: 1 });

    await t.sql.query('ALTER TABLE write_back_entries_hidden RENAME TO write_back_entries');
    await expect(t.service.flush()).resolves.toMatchObject({ committed: 1 });
    expect((await health.isReady()).writeBack).toMatchObject({ status: 'up', circuit: 'closed' });
  });

  it.skipIf(isPglite())(
    `one batch write at a time while the flusher keeps up, flushConcurrency once the queue waited flushScaleUpLagMs: in stats and readiness (${NEEDS_SERVER})`,
    async () => {
      t = await startWriteBack({ autoFlush: true, flushIntervalMs: 50, batchSize: 10, flushConcurrency: 2, flushScaleUpLagMs: 200 });
      const health = t.app.get(WriteBackHealthIndicator);
      expect(t.service.stats().flushWorkers).toBe(0);
      const lock = await lockTable(t);
      try {
        for (let i = 0; i < 40; i++) await t.service.set(`w${i}`, i);
        // The first batch blocks on the lock; the rest of the queue is young, so no second connection yet.
        await until(() => t!.service.stats().inFlight === 10, 2000, 'the first batch to be in flight');
        expect(t.service.stats().flushWorkers).toBe(1);
        // Once the queue head has waited 200 ms, the next tick adds the second writer.
        await until(() => t!.service.stats().inFlight === 20, 3000, 'a second batch in flight');
        expect(t.service.stats().flushWorkers).toBe(2);
        expect((await health.isReady()).writeBack).toMatchObject({ flushWorkers: 2, inFlight: 20 });
      } finally {
        await lock.release();
      }
      await t.service.flush();
      expect(t.service.stats()).toMatchObject({ dirty: 0, flushWorkers: 0 });
      expect((await t.sql.query('SELECT count(*)::int AS n FROM write_back_entries')).rows[0].n).toBe(40);
    },
  );

  it('liveness is down only when the flush timer stops ticking', async () => {
    t = await startWriteBack({ autoFlush: true, flushIntervalMs: 20, livenessStallIntervals: 3 });
    const health = t.app.get(WriteBackHealthIndicator);
    const { lastTickAt } = t.service.flushLoopStatus();
    await until(() => t!.service.flushLoopStatus().lastTickAt > lastTickAt, 2000, 'a timer tick');
    expect(health.liveness().healthy).toBe(true);
    // Seen from 10 intervals later with no tick in between, the loop counts as stalled.
    const later = t.service.flushLoopStatus().lastTickAt + 200;
    const stalled = health.liveness(later);
    expect(stalled.healthy).toBe(false);
    expect(String(stalled.details.reasons)).toContain('has not ticked');
  });

  it('readiness reports "shutting down" from the start of the drain, with or without the flush timer', async () => {
    t = await startWriteBack({ autoFlush: false });
    const health = t.app.get(WriteBackHealthIndicator);
    await t.service.set('last', 1);
    expect((await health.isReady()).writeBack.status).toBe('up');
    await t.service.beforeApplicationShutdown();
    expect(t.service.isShuttingDown).toBe(true);
    const down = await health.isReady();
    expect(down.writeBack.status).toBe('down');
    expect(String(down.writeBack.reasons)).toContain('shutting down');
    expect(health.isAlive().writeBack.status).toBe('up');
  });
});
