import { afterEach, describe, expect, it } from 'vitest';
import { chaosApp, Load, report, Sampler, summarize, verifyAcked } from '../support/chaos.js';
import { isPglite } from '../support/database.js';
import { probe } from '../support/health-probes.js';
import { sleep, until } from '../support/wait.js';
import { startWriteBack, type ProxiedTestApp } from '../support/write-back-app.js';

const LATENCY_MS = 150;
const MAX_FLUSH_LAG_MS = 500;

/**
 * A slow database: the proxy delays every chunk by 150 ms each way. The flusher cannot keep up, flush lag
 * grows past maxFlushLagMs and readiness turns down (liveness stays up); once the latency is gone the backlog
 * drains at full speed, readiness comes back, and nothing is lost.
 */
describe('chaos: slow database (added latency) under load', () => {
  let t: ProxiedTestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('flush lag grows and readiness reflects it; throughput recovers after', async () => {
    t = await startWriteBack({
      autoFlush: true,
      flushIntervalMs: 50,
      batchSize: 200,
      flushConcurrency: 2,
      maxDirtyEntries: 200_000,
      maxFlushLagMs: MAX_FLUSH_LAG_MS,
      retryBaseDelayMs: 50,
      retryMaxDelayMs: 1000,
    }, chaosApp());
    const { service, proxy } = t;
    const sampler = new Sampler(t).start(20);
    // Embedded PGlite (one query at a time) flushes a few times slower than a server: lighter load there, so the
    // service can catch up once the latency is gone.
    const thinkMs = isPglite() ? 6 : 1;
    const load = new Load(service, { writers: 32, keysPerWriter: 2000, maxOpsPerWriter: 20_000, maxDurationMs: 60_000, thinkMs }).start();

    // Baseline: the flusher keeps up and readiness is up.
    await until(() => service.stats().flushedEntries >= 2000, 20_000, 'the first flushes');
    const baselineFrom = Date.now();
    await sleep(2000);
    const baselineRate = sampler.flushRate(baselineFrom, Date.now());
    const baselineLag = Math.max(...sampler.samples.filter((s) => s.at >= baselineFrom).map((s) => s.flushLagMs));
    expect(await probe(t, 'ready')).toBe(200);

    proxy.setLatency(LATENCY_MS);
    const slowFrom = Date.now();
    await until(() => service.stats().flushLagMs > MAX_FLUSH_LAG_MS, 15_000, 'flush lag to pass maxFlushLagMs');
    await until(async () => (await probe(t!, 'ready')) === 503, 15_000, 'readiness to turn down');
    const ready = await t.health.readiness();
    expect(String(ready.details.reasons)).toContain('maxFlushLagMs');
    expect(await probe(t, 'live')).toBe(200);
    await sleep(Math.max(0, slowFrom + 5000 - Date.now()));
    const slowRate = sampler.flushRate(slowFrom + 1000, Date.now());
    const slowLag = service.stats().flushLagMs;
    expect(slowLag).toBeGreaterThan(MAX_FLUSH_LAG_MS);

    proxy.restore();
    const restoredAt = Date.now();
    await until(() => service.stats().flushLagMs < MAX_FLUSH_LAG_MS, 30_000, 'flush lag to fall back under maxFlushLagMs');
    await until(async () => (await probe(t!, 'ready')) === 200, 10_000, 'readiness to come back');
    const recoveredAt = Date.now();
    const drainRate = sampler.flushRate(restoredAt, recoveredAt);
    // The backlog drained much faster than the slow database could take it, and the service keeps up again.
    expect(drainRate).toBeGreaterThan(3 * slowRate);
    await sleep(1000);
    // And it keeps up again under the same load: the median lag over the next second is back under the limit.
    const after = sampler.samples.filter((s) => s.at >= recoveredAt).map((s) => s.flushLagMs).sort((a, b) => a - b);
    const medianLagAfter = after[after.length >> 1];
    expect(medianLagAfter).toBeLessThan(MAX_FLUSH_LAG_MS);

    await load.stop();
    await service.flush({ timeoutMs: 30_000 });
    sampler.stop();
    expect(load.unexpected).toEqual([]);
    expect(sampler.livenessDown).toBe(0);
    const stats = service.stats();
    expect(stats).toMatchObject({ dirty: 0, deadLettered: 0 });
    expect(await service.countDeadLetters()).toBe(0);
    const verification = await verifyAcked(t.schema, load.acked);
    report(
      'slow-database',
      summarize(load, verification, sampler, stats.deadLettered),
      `latency ${LATENCY_MS} ms per chunk each way; rows flushed/s: baseline ${Math.round(baselineRate)}, ` +
        `slow ${Math.round(slowRate)}, draining after restore ${Math.round(drainRate)}; lag: baseline max ${baselineLag} ms, ` +
        `slow ${slowLag} ms, back under ${MAX_FLUSH_LAG_MS} ms ${recoveredAt - restoredAt} ms after restore, ` +
        `median over the next second ${medianLagAfter} ms; longest set ${load.maxAckMs} ms`,
    );
    expect(verification.lostKeys).toEqual([]);
  });
});
