import { afterEach, describe, expect, it } from 'vitest';
import { WriteBackOverloadedError } from '../../src/write-back/index.js';
import { chaosApp, Load, report, Sampler, summarize, verifyAcked } from '../support/chaos.js';
import { sleep, until } from '../support/wait.js';
import { startWriteBack, type ProxiedTestApp } from '../support/write-back-app.js';

const MAX_DIRTY = 500;
const LATENCY_MS = 100;
const SLOW_MS = 8000;
const BLOCK_TIMEOUT_MS = 1500;
const MiB = 1024 * 1024;

const gc = (globalThis as { gc?: () => void }).gc;

/** heapUsed after a full collection (vitest.chaos.config.ts runs the workers with --expose-gc). */
function heapAfterGc(): number {
  gc?.();
  return process.memoryUsage().heapUsed;
}

/**
 * Backpressure under load: maxDirtyEntries 500 and a slow database (100 ms per chunk each way) under 64 writers
 * that keep writing new keys. Dirty entries never pass the bound (checked after every acknowledgement), the heap
 * stays flat, and callers see WriteBackOverloadedError at once (`reject`) or wait for room (`block`, up to
 * backpressureTimeoutMs). When the latency is gone everything flushes and nothing acknowledged is lost.
 */
describe.each(['reject', 'block'] as const)('chaos: backpressure under load on a slow database (%s)', (mode) => {
  let t: ProxiedTestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it(`keeps dirty <= maxDirtyEntries and the heap bounded; callers ${mode === 'reject' ? 'get the typed error' : 'wait'}`, async () => {
    expect(gc, 'run with --expose-gc (vitest.chaos.config.ts sets it)').toBeTypeOf('function');
    t = await startWriteBack({
      autoFlush: true,
      backpressure: mode,
      backpressureTimeoutMs: mode === 'block' ? BLOCK_TIMEOUT_MS : 0,
      maxDirtyEntries: MAX_DIRTY,
      // The clean LRU is bounded too: memory is dirty + clean, both capped.
      maxEntries: 1000,
      flushIntervalMs: 20,
      // Batches smaller than the number of writers: each commit frees fewer slots than there are waiters.
      batchSize: 25,
      flushConcurrency: 2,
      maxFlushLagMs: 60_000,
    }, chaosApp());
    const { service, proxy } = t;
    let maxDirtyAtAck = 0;
    const sampler = new Sampler(t).start(10);
    // Warm up the app, driver and JIT on a short burst, then take the baseline heap.
    const warmup = new Load(service, { writers: 8, keysPerWriter: 50, maxOpsPerWriter: 200, maxDurationMs: 10_000 }).start();
    await warmup.finished();
    await service.flush({ timeoutMs: 30_000 });
    const heapBefore = heapAfterGc();

    proxy.setLatency(LATENCY_MS);
    const load = new Load(service, {
      writers: 64,
      keysPerWriter: 200,
      maxOpsPerWriter: 50_000,
      maxDurationMs: 60_000,
      rejectBackoffMs: 2,
      afterAck: () => (maxDirtyAtAck = Math.max(maxDirtyAtAck, service.stats().dirty)),
    }).start();
    const slowFrom = Date.now();
    await until(() => service.stats().dirty >= MAX_DIRTY, 10_000, 'dirty entries to reach maxDirtyEntries');
    if (mode === 'reject') await until(() => load.rejected > 0, 10_000, 'a rejected write');
    else await until(() => load.pending >= 32, 10_000, 'writers waiting for room');
    const heapDuring: number[] = [];
    while (Date.now() - slowFrom < SLOW_MS) {
      await sleep(500);
      heapDuring.push(heapAfterGc());
    }
    const pendingAtEnd = load.pending;
    proxy.restore();
    await load.stop();
    await service.flush({ timeoutMs: 30_000 });
    sampler.stop();
    const heapAfter = heapAfterGc();

    expect(load.unexpected).toEqual([]);
    expect(maxDirtyAtAck).toBeLessThanOrEqual(MAX_DIRTY);
    expect(sampler.maxDirty).toBeLessThanOrEqual(MAX_DIRTY);
    expect(maxDirtyAtAck).toBe(MAX_DIRTY);
    for (const error of load.rejections) {
      expect(error).toBeInstanceOf(WriteBackOverloadedError);
      expect(error.limit).toBe(MAX_DIRTY);
      expect(error.message).toContain('maxDirtyEntries');
    }
    if (mode === 'reject') {
      expect(load.rejected).toBeGreaterThan(0);
      expect(load.rejections[0].message).toContain('use backpressure: "block"');
    } else {
      // Callers waited: many were held at once, and any rejection came only after the full timeout.
      expect(pendingAtEnd).toBeGreaterThanOrEqual(32);
      expect(load.maxAckMs).toBeGreaterThanOrEqual(100);
      if (load.rejected > 0) {
        expect(load.minRejectMs).toBeGreaterThanOrEqual(BLOCK_TIMEOUT_MS - 5);
        expect(load.rejections[0].message).toContain(`backpressureTimeoutMs=${BLOCK_TIMEOUT_MS}`);
      }
    }
    // Bounded memory: the heap under sustained overload stays within a few MiB of the baseline, although
    // the writers attempted far more writes than that could hold.
    const peakGrowth = Math.max(...heapDuring) - heapBefore;
    expect(peakGrowth).toBeLessThan(32 * MiB);
    expect(heapAfter - heapBefore).toBeLessThan(32 * MiB);

    const stats = service.stats();
    expect(stats).toMatchObject({ dirty: 0, deadLettered: 0 });
    const verification = await verifyAcked(t.schema, load.acked);
    const mib = (bytes: number) => (bytes / MiB).toFixed(1);
    report(
      `backpressure-${mode}`,
      summarize(load, verification, sampler, stats.deadLettered),
      `maxDirtyEntries ${MAX_DIRTY}, max dirty seen ${Math.max(maxDirtyAtAck, sampler.maxDirty)} (checked after every ack); ` +
        `heap after gc: before ${mib(heapBefore)} MiB, peak under load ${mib(Math.max(...heapDuring))} MiB, after ${mib(heapAfter)} MiB; ` +
        (mode === 'reject'
          ? `rejections took at most ${load.maxRejectMs} ms`
          : `longest wait before acceptance ${load.maxAckMs} ms, ${pendingAtEnd} callers waiting at the end` +
            (load.rejected > 0 ? `, timeouts after >= ${load.minRejectMs} ms` : '')),
    );
    expect(verification.lostKeys).toEqual([]);
  });
});
