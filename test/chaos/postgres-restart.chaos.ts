import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { chaosApp, Load, report, Sampler, summarize, verifyAcked } from '../support/chaos.js';
import { isPglite } from '../support/database.js';
import { sleep, until } from '../support/wait.js';
import { startWriteBack, type ProxiedTestApp } from '../support/write-back-app.js';

const run = promisify(execFile);

/**
 * Restarts the Postgres server itself (`pg_ctlcluster ... restart`) under load. That disconnects every client
 * of the server on this machine, so it runs only when WRITE_BACK_CHAOS_RESTART_POSTGRES=1 (CI sets it), and
 * only on a real server.
 */
const enabled = process.env.WRITE_BACK_CHAOS_RESTART_POSTGRES === '1';
const skipReason = isPglite()
  ? 'the test database is embedded PGlite, there is no server to restart'
  : !enabled
    ? 'set WRITE_BACK_CHAOS_RESTART_POSTGRES=1 to run it (it restarts the machine-wide Postgres server)'
    : undefined;
if (skipReason !== undefined) process.stdout.write(`[chaos postgres-restart] skipped: ${skipReason}\n`);

function cluster(): string {
  const versions = readdirSync('/etc/postgresql');
  if (versions.length === 0) throw new Error('no cluster under /etc/postgresql');
  return versions.sort().at(-1)!;
}

describe('chaos: Postgres server restart under load', () => {
  let t: ProxiedTestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it.skipIf(skipReason !== undefined)(`the pool recovers and nothing acknowledged is lost${skipReason ? ` (skipped: ${skipReason})` : ''}`, async () => {
    t = await startWriteBack({
      autoFlush: true,
      flushIntervalMs: 50,
      batchSize: 500,
      flushConcurrency: 2,
      maxDirtyEntries: 200_000,
      retryBaseDelayMs: 50,
      retryMaxDelayMs: 1000,
      maxFlushLagMs: 2000,
    }, chaosApp());
    const { service } = t;
    const sampler = new Sampler(t).start(20);
    const load = new Load(service, { writers: 48, keysPerWriter: 500, maxOpsPerWriter: 20_000, maxDurationMs: 90_000, thinkMs: 1 }).start();
    await until(() => service.stats().flushedEntries >= 3000, 20_000, 'the first flushes');

    const restartStarted = Date.now();
    const version = cluster();
    await run('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'restart'], { timeout: 120_000 });
    const restartMs = Date.now() - restartStarted;
    const flushedAfterRestart = service.stats().flushedEntries;
    // The pool gets new connections and flushing resumes by itself.
    await until(() => service.stats().flushedEntries > flushedAfterRestart + 1000, 30_000, 'flushing to resume after the restart');
    await until(() => service.stats().circuit === 'closed' && service.stats().flushLagMs < 2000, 30_000, 'the flusher to catch up');
    const recoveredMs = Date.now() - restartStarted - restartMs;
    await sleep(1000);
    await load.stop();
    await service.flush({ timeoutMs: 60_000 });
    sampler.stop();

    expect(load.unexpected).toEqual([]);
    expect(sampler.livenessDown).toBe(0);
    const stats = service.stats();
    expect(stats).toMatchObject({ dirty: 0, deadLettered: 0 });
    expect(stats.retries).toBeGreaterThan(0);
    expect(await service.countDeadLetters()).toBe(0);
    const verification = await verifyAcked(t.schema, load.acked);
    report(
      'postgres-restart',
      summarize(load, verification, sampler, stats.deadLettered),
      `pg_ctlcluster ${version} main restart took ${restartMs} ms; flusher caught up ${recoveredMs} ms later; ` +
        `flush retries ${stats.retries}, last error ${stats.lastError?.code ?? 'none'}; rows ${verification.rows}`,
    );
    expect(verification.lostKeys).toEqual([]);
  });
});
