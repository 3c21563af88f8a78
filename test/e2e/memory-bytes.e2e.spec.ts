import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WriteBackOverloadedError } from '../../src/write-back/index.js';
import { connectSql, databaseUrl, freshSchema, isPglite, lockTable, NEEDS_SERVER, tableRows } from '../support/database.js';
import { buildDemo, startDemo, type DemoProcess } from '../support/demo-process.js';
import { until } from '../support/wait.js';
import { startWriteBack, type WriteBackTestApp } from '../support/write-back-app.js';

const MiB = 1024 * 1024;
/** A JSON string value of just under 1 MiB (maxValueBytes is 1 MiB). */
const oneMiBValue = (i: number) => `${i}:${'x'.repeat(MiB - 100)}`;

/** A gauge of the Prometheus text. */
const gauge = (text: string, name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1]);

describe('memory bounded in bytes: a stalled database and 1 MiB values (the demo as a process)', () => {
  beforeAll(() => buildDemo(), 180_000);
  const running: DemoProcess[] = [];
  afterAll(async () => {
    for (const demo of running) {
      if (demo.child.exitCode === null) demo.child.kill('SIGKILL');
      await demo.exited;
    }
  });

  const OFFERED = 128;

  /** Starts the demo with `maxDirtyBytes`, stalls its database (a lock every flush waits on), offers 1 MiB writes. */
  async function offerToStalledDemo(maxDirtyBytes: number) {
    const schema = freshSchema();
    const demo = await startDemo({
      DATABASE_URL: databaseUrl(),
      WRITE_BACK_SCHEMA: schema,
      WRITE_BACK_MAX_DIRTY_BYTES: String(maxDirtyBytes),
      WRITE_BACK_BACKPRESSURE: 'reject',
      WRITE_BACK_FLUSH_INTERVAL_MS: '100',
    });
    running.push(demo);
    const sql = await connectSql(schema);
    await sql.query('BEGIN');
    await sql.query('LOCK TABLE write_back_entries IN EXCLUSIVE MODE');
    const rss = async () => gauge(await (await fetch(`${demo.url}/metrics`)).text(), 'process_resident_memory_bytes');
    const rssBefore = await rss();
    const statuses: number[] = [];
    let refusal: any;
    for (let i = 0; i < OFFERED; i++) {
      const response = await fetch(`${demo.url}/kv/big${i}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(oneMiBValue(i)),
      });
      statuses.push(response.status);
      const text = await response.text();
      if (response.status === 503) refusal ??= JSON.parse(text);
    }
    const grown = (await rss()) - rssBefore;
    return { demo, sql, statuses, refusal, grown, accepted: statuses.filter((s) => s === 204).length };
  }

  // The stall is a table lock held open on one connection; embedded PGlite runs every connection's queries in one
  // session, so the lock would stall the test's own queries too.
  it.skipIf(isPglite())(`refuses writes past maxDirtyBytes with 503, holds RSS to the bound, shows the bytes in stats, metrics and readiness (${NEEDS_SERVER})`, async () => {
    const bound = 16 * MiB;
    const bounded = await offerToStalledDemo(bound);
    const { demo, sql } = bounded;
    try {
      // Each write holds ~1 MiB of JSON text: the bound admits 16 of them and refuses every later one.
      expect(bounded.accepted).toBe(16);
      expect(bounded.statuses.slice(bounded.accepted).every((s) => s === 503)).toBe(true);
      expect(bounded.refusal).toMatchObject({ statusCode: 503, error: 'WriteBackOverloadedError' });
      expect(bounded.refusal.message).toContain('maxDirtyBytes');

      const stats = (await (await fetch(`${demo.url}/admin/stats`)).json()) as { dirtyBytes: number; dirty: number };
      expect(stats.dirty).toBe(bounded.accepted);
      expect(stats.dirtyBytes).toBeLessThanOrEqual(bound);
      expect(stats.dirtyBytes).toBeGreaterThan(bound - 2 * MiB);
      const metrics = await (await fetch(`${demo.url}/metrics`)).text();
      expect(gauge(metrics, 'write_back_dirty_bytes')).toBe(stats.dirtyBytes);
      const ready = await fetch(`${demo.url}/health/ready`);
      expect(ready.status).toBe(503);
      const readiness = (await ready.json()) as any;
      expect(readiness.error.writeBack.dirtyBytes).toBe(stats.dirtyBytes);
      expect(readiness.error.writeBack.reasons.join(' ')).toContain('dirtyBytesHighWatermark');

      // The same offer with a bound above it (as before maxDirtyBytes: only maxDirtyEntries, 100,000, applied).
      const unbounded = await offerToStalledDemo(1024 * MiB);
      await unbounded.sql.query('ROLLBACK');
      await unbounded.sql.end();
      expect(unbounded.accepted).toBe(OFFERED);
      console.log(
        `[memory-bytes] ${OFFERED} 1-MiB writes to a stalled database: RSS grew ${(bounded.grown / MiB).toFixed(1)} MiB with ` +
          `maxDirtyBytes=16 MiB (${bounded.accepted} accepted), ${(unbounded.grown / MiB).toFixed(1)} MiB without a byte bound`,
      );
      // What the bound keeps out (112 MiB of held text) shows in RSS; the refused bodies are garbage on both sides.
      expect(bounded.grown).toBeLessThan(unbounded.grown - 64 * MiB);

      // The database comes back: everything accepted is flushed, and there is room again.
      await sql.query('COMMIT');
      await until(async () => (await tableRows(sql)).size === bounded.accepted, 30_000, 'the backlog to flush');
      const again = await fetch(`${demo.url}/kv/after`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(oneMiBValue(99)) });
      expect(again.status).toBe(204);
    } finally {
      await sql.query('ROLLBACK').catch(() => undefined);
      await sql.end();
    }
  });
});

describe('maxDirtyBytes backpressure in the library', () => {
  let t: WriteBackTestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  // The stall is a table lock held open on one connection; embedded PGlite runs every connection's queries in one
  // session, so the lock would stall the test's own queries too.
  it.skipIf(isPglite())(`"block": set waits while the bytes are full and resolves once a flush frees them; a timeout names maxDirtyBytes (${NEEDS_SERVER})`, async () => {
    t = await startWriteBack({ autoFlush: true, flushIntervalMs: 50, maxDirtyBytes: 4 * MiB, backpressure: 'block', backpressureTimeoutMs: 60_000 });
    const lock = await lockTable(t);
    for (let i = 0; i < 4; i++) await t.service.set(`b${i}`, oneMiBValue(i));
    let settled = false;
    const blocked = t.service.set('b4', oneMiBValue(4)).then(() => (settled = true));
    // The flusher took the batch and is stuck on the lock inside Postgres; the fifth write is still waiting.
    await until(() => t!.service.stats().inFlight > 0, 10_000, 'a flush in flight');
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
    expect(t.service.stats().dirtyBytes).toBeLessThanOrEqual(4 * MiB);
    await lock.release();
    await blocked;
    expect(t.service.stats().dirtyBytes).toBeLessThanOrEqual(4 * MiB);
    await t.service.flush();
    expect((await tableRows(t.sql)).size).toBe(5);
    await t.close();

    t = await startWriteBack({ maxDirtyBytes: 1.5 * MiB, backpressure: 'block', backpressureTimeoutMs: 50 });
    await t.service.set('c0', oneMiBValue(0));
    const error = await t.service.set('c1', oneMiBValue(1)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WriteBackOverloadedError);
    expect((error as WriteBackOverloadedError).option).toBe('maxDirtyBytes');
    expect((error as Error).message).toMatch(/maxDirtyBytes=1572864.*backpressureTimeoutMs=50/);
  });

  it('bounds the clean cache by maxCleanBytes', async () => {
    t = await startWriteBack({ maxCleanBytes: 3 * MiB });
    for (let i = 0; i < 8; i++) await t.service.set(`clean${i}`, oneMiBValue(i));
    await t.service.flush();
    const stats = t.service.stats();
    expect(stats.cleanBytes).toBeLessThanOrEqual(3 * MiB);
    expect(stats.cleanEntries).toBe(3);
    // An evicted value is still there: read back from Postgres.
    expect(await t.service.get('clean0')).toBe(oneMiBValue(0));
  });
});
