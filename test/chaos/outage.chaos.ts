import { afterEach, describe, expect, it } from 'vitest';
import { WriteBackOverloadedError } from '../../src/write-back/index.js';
import { chaosApp, Load, report, Sampler, summarize, verifyAcked } from '../support/chaos.js';
import { probe } from '../support/health-probes.js';
import { sleep, until } from '../support/wait.js';
import { startWriteBack, type ProxiedTestApp } from '../support/write-back-app.js';

const MAX_DIRTY = 5000;
const OUTAGE_MS = 10_500;

/**
 * Postgres unreachable for 10+ s under load (the proxy resets new connections and cuts the open ones).
 * Writes are accepted until maxDirtyEntries, then rejected at once (`reject`) or held (`block`); readiness is
 * down and liveness up for the whole outage; when the database returns everything flushes, nothing is
 * dead-lettered and every acknowledged write is in the table.
 */
describe.each(['reject', 'block'] as const)('chaos: Postgres unreachable for 10 s under load (backpressure %s)', (mode) => {
  let t: ProxiedTestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it(`accepts writes up to maxDirtyEntries, then ${mode === 'reject' ? 'rejects' : 'blocks'}; recovers with nothing lost`, async () => {
    t = await startWriteBack({
      autoFlush: true,
      backpressure: mode,
      // `block`: longer than the outage, so blocked writers wait through it and are accepted after.
      backpressureTimeoutMs: mode === 'block' ? 30_000 : 0,
      maxDirtyEntries: MAX_DIRTY,
      flushIntervalMs: 100,
      batchSize: 500,
      flushConcurrency: 2,
      retryBaseDelayMs: 50,
      retryMaxDelayMs: 1000,
      circuitBreakerThreshold: 3,
      maxFlushLagMs: 2000,
      statementTimeoutMs: 5000,
    }, chaosApp());
    const { service, proxy } = t;
    const sampler = new Sampler(t).start(20);
    const load = new Load(service, { writers: 48, keysPerWriter: 400, maxOpsPerWriter: 20_000, maxDurationMs: 60_000, thinkMs: 1 }).start();

    // Healthy first: the flusher keeps up.
    await until(() => service.stats().flushedEntries >= 3000, 20_000, 'the first flushes');
    expect(await probe(t, 'ready')).toBe(200);

    proxy.outage();
    const outageStart = Date.now();
    const ackedAtStart = load.acknowledged;
    const dirtyAtStart = service.stats().dirty;

    await until(() => service.stats().circuit !== 'closed', 10_000, 'the circuit to open');
    await until(async () => (await probe(t!, 'ready')) === 503, 10_000, 'readiness to turn down');
    expect(await probe(t, 'live')).toBe(200);
    await until(() => service.stats().dirty >= MAX_DIRTY, 10_000, 'the cache to fill up to maxDirtyEntries');
    // Accepted until full: every write that found room is acknowledged (a write that lands while a flush is due
    // resolves one event-loop turn later, so the last acknowledgements may trail the dirty count by a turn).
    await until(() => load.acknowledged - ackedAtStart >= MAX_DIRTY - dirtyAtStart, 2000, 'every write that found room acknowledged');
    if (mode === 'reject') {
      await until(() => load.rejected > 0, 10_000, 'a rejected write');
    } else {
      await until(() => load.pending >= 24, 10_000, 'writers blocked on backpressure');
    }

    // The rest of the outage, timed; readiness stays down and liveness up all along.
    await sleep(Math.max(0, outageStart + OUTAGE_MS - Date.now()));
    const outageSamples = sampler.samples.filter((s) => s.at >= outageStart);
    expect(outageSamples.length).toBeGreaterThan(100);
    expect(outageSamples.every((s) => s.alive)).toBe(true);
    expect(await probe(t, 'ready')).toBe(503);
    expect(await probe(t, 'live')).toBe(200);
    expect(service.stats()).toMatchObject({ dirty: MAX_DIRTY, deadLettered: 0 });
    if (mode === 'block') {
      expect(load.rejected).toBe(0);
      expect(load.pending).toBeGreaterThanOrEqual(24);
    }

    proxy.restore();
    const restoredAt = Date.now();
    await until(() => service.stats().circuit === 'closed' && service.stats().dirty < MAX_DIRTY, 20_000, 'flushing to resume');
    if (mode === 'block') await until(() => load.maxAckMs >= OUTAGE_MS / 2, 20_000, 'blocked writers to be accepted');
    await until(async () => (await probe(t!, 'ready')) === 200, 20_000, 'readiness to come back');
    const recoveredMs = Date.now() - restoredAt;
    // Some more load on the recovered service, then stop and flush what is left.
    await sleep(1500);
    await load.stop();
    await service.flush({ timeoutMs: 30_000 });
    sampler.stop();

    expect(load.unexpected).toEqual([]);
    for (const error of load.rejections) {
      expect(error).toBeInstanceOf(WriteBackOverloadedError);
      expect(error.limit).toBe(MAX_DIRTY);
      expect(error.dirty).toBeGreaterThanOrEqual(MAX_DIRTY);
      expect(error.message).toContain('maxDirtyEntries');
    }
    if (mode === 'reject') {
      expect(load.rejected).toBeGreaterThan(0);
    } else {
      expect(load.rejected).toBe(0);
    }
    expect(sampler.maxDirty).toBeLessThanOrEqual(MAX_DIRTY);
    expect(sampler.livenessDown).toBe(0);
    const stats = service.stats();
    expect(stats).toMatchObject({ dirty: 0, deadLettered: 0 });
    expect(stats.retries).toBeGreaterThan(0);
    expect(await service.countDeadLetters()).toBe(0);
    const verification = await verifyAcked(t.schema, load.acked);
    report(
      `outage-${mode}`,
      summarize(load, verification, sampler, stats.deadLettered),
      `outage ${OUTAGE_MS} ms, connections refused ${proxy.refused}, cut ${proxy.cutCount}, flush retries ${stats.retries}, ` +
        `ready again ${recoveredMs} ms after restore, longest ${mode === 'block' ? 'blocked' : 'acknowledged'} set ${load.maxAckMs} ms, ` +
        `max dirty ${sampler.maxDirty}/${MAX_DIRTY}, rows ${verification.rows}`,
    );
    expect(verification.lostKeys).toEqual([]);
  });
});
