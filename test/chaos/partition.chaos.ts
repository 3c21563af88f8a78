import { afterEach, describe, expect, it } from 'vitest';
import { chaosApp, Load, report, Sampler, summarize, verifyAcked } from '../support/chaos.js';
import { probe } from '../support/health-probes.js';
import { sleep, until } from '../support/wait.js';
import { startWriteBack, type ProxiedTestApp } from '../support/write-back-app.js';

const STATEMENT_TIMEOUT_MS = 1000;
const PARTITION_MS = 3000;

/**
 * A silent network partition: packets are dropped both ways and no RST or FIN ever arrives (a failover to
 * another address, a NAT or firewall that lost the connection state). The connections open during it stay
 * silent afterwards; new ones work once the network is back.
 *
 * `statement_timeout` is enforced by the server, which never receives these statements; so a batch write also
 * has a client-side deadline (statementTimeoutMs plus up to 5 s) after which its connection is destroyed and the
 * batch retried as a transient failure, and connection attempts give up as soon. Without that deadline a batch
 * on a silent connection waited until the operating system gave up (about 15 minutes on Linux) with its worker,
 * so nothing flushed and a graceful shutdown could not drain: this test failed that way before the fix.
 */
describe('chaos: silent network partition', () => {
  let t: ProxiedTestApp | undefined;
  afterEach(async () => {
    // End the silent connections first, or the shutdown drain and pool.end() would wait on them forever.
    t?.proxy.cut();
    await t?.close();
    t = undefined;
  });

  it('a flush stuck on a silent connection is retried after statementTimeoutMs and everything flushes once the network is back', async () => {
    t = await startWriteBack({
      autoFlush: true,
      statementTimeoutMs: STATEMENT_TIMEOUT_MS,
      flushIntervalMs: 50,
      batchSize: 200,
      flushConcurrency: 2,
      retryBaseDelayMs: 50,
      retryMaxDelayMs: 500,
      maxFlushLagMs: 2000,
      maxDirtyEntries: 100_000,
      shutdownTimeoutMs: 1000,
    }, chaosApp());
    const { service, proxy } = t;
    const sampler = new Sampler(t).start(20);
    const load = new Load(service, { writers: 16, keysPerWriter: 500, maxOpsPerWriter: 20_000, maxDurationMs: 60_000, thinkMs: 2 }).start();
    try {
      await until(() => service.stats().flushedEntries >= 1000, 20_000, 'the first flushes');
      proxy.blackhole();
      const partitionStart = Date.now();
      await until(async () => (await probe(t!, 'ready')) === 503, 10_000, 'readiness to turn down');
      expect(await probe(t, 'live')).toBe(200);
      await sleep(Math.max(0, partitionStart + PARTITION_MS - Date.now()));
      proxy.restore();
      const restoredAt = Date.now();
      // Within a statement timeout (plus backoff and slack) the stuck flushes must have been given up and
      // retried on new connections, and the backlog flushed.
      await until(() => service.stats().flushLagMs < 2000, STATEMENT_TIMEOUT_MS + 8000, 'the flusher to recover after the partition');
      const recoveredMs = Date.now() - restoredAt;
      await load.stop();
      await service.flush({ timeoutMs: 10_000 });
      sampler.stop();
      const stats = service.stats();
      expect(stats).toMatchObject({ dirty: 0, deadLettered: 0 });
      const verification = await verifyAcked(t.schema, load.acked);
      report(
        'partition',
        summarize(load, verification, sampler, stats.deadLettered),
        `silent partition ${PARTITION_MS} ms; recovered ${recoveredMs} ms after the network came back`,
      );
      expect(verification.lostKeys).toEqual([]);
    } catch (error) {
      // Diagnose: with the load stopped, are new writes still flushed at all?
      await load.stop();
      const flushedBefore = service.stats().flushedEntries;
      for (let i = 0; i < 10; i++) await service.set(`after-partition-${i}`, i);
      const stillFlushing = await until(() => service.stats().flushedEntries >= flushedBefore + 10, 2000).then(
        () => 'yes',
        () => 'no (every flush worker is stuck)',
      );
      const stats = service.stats();
      process.stdout.write(
        `[chaos partition] known bug reproduced: ${(error as Error).message}; dirty ${stats.dirty}, in flight ${stats.inFlight}, ` +
          `flush lag ${stats.flushLagMs} ms, circuit ${stats.circuit}, liveness ${t.health.liveness().healthy ? 'up' : 'down'}, ` +
          `writes acknowledged ${load.acknowledged}, unexpected errors ${load.unexpected.length}; ` +
          `new writes after the load stopped flushed: ${stillFlushing}\n`,
      );
      throw error;
    } finally {
      await load.stop();
      sampler.stop();
    }
  });
});
