import { afterEach, describe, expect, it } from 'vitest';
import type { WriteBackService } from '../../src/write-back/index.js';
import { NEEDS_SERVER, connectSql, freshSchema, isPglite, tableRows } from '../support/database.js';
import { seededRandom } from '../support/random.js';
import { until } from '../support/wait.js';
import { startWriteBack, type WriteBackTestApp } from '../support/write-back-app.js';

/** The hybrid clock of an instance, to run it ahead of the others (as a replica with a skewed clock would). */
function skewClock(service: WriteBackService, aheadMs: number): void {
  const cache = (service as unknown as { cache: { now: () => number; clock: { nowMs: () => number } } }).cache;
  cache.now = cache.clock.nowMs = () => Date.now() + aheadMs;
}

/** The backend pid of an instance's listen connection. */
function listenerPid(service: WriteBackService): number {
  return (service as unknown as { listener: { client: { processID: number } } }).listener.client.processID;
}

/** Polls `get` on every instance until each returns `expected` for every key, within `timeoutMs`. */
async function untilAllRead(instances: WriteBackTestApp[], expected: Map<string, unknown>, timeoutMs = 5000): Promise<void> {
  await until(
    async () => {
      for (const t of instances) {
        for (const [key, value] of expected) {
          if (JSON.stringify(await t.service.get(key)) !== JSON.stringify(value)) return false;
        }
      }
      return true;
    },
    timeoutMs,
    'every replica to read the committed values',
  );
}

describe.skipIf(isPglite())(`several instances on one Postgres: invalidation, hybrid clock (${NEEDS_SERVER})`, () => {
  const apps: WriteBackTestApp[] = [];
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((t) => t.close()));
  });

  async function replicas(count: number, options: Parameters<typeof startWriteBack>[0] = {}): Promise<WriteBackTestApp[]> {
    const schema = options.schema ?? freshSchema();
    const started: WriteBackTestApp[] = [];
    for (let i = 0; i < count; i++) {
      const t = await startWriteBack({ ...options, schema });
      apps.push(t);
      started.push(t);
    }
    for (const t of started) expect(t.service.stats().listener).toBe('listening');
    return started;
  }

  it('every instance reads what one committed, upserts and deletes, and never serves its older clean copy', async () => {
    const [a, b, c] = await replicas(3);
    expect(new Set([a, b, c].map((t) => t.service.stats().instanceId)).size).toBe(3);
    for (let i = 0; i < 100; i++) await a.service.set(`k${i}`, { v: 1 });
    await a.service.flush();
    const v1 = new Map(Array.from({ length: 100 }, (_, i) => [`k${i}`, { v: 1 }]));
    await untilAllRead([b, c], v1);
    // B and C now hold clean copies of v1.
    expect(b.service.stats().cleanEntries).toBe(100);
    for (let i = 0; i < 100; i++) await a.service.set(`k${i}`, { v: 2 });
    for (let i = 0; i < 10; i++) await a.service.delete(`k${i}`);
    await a.service.flush();
    const v2 = new Map<string, unknown>(Array.from({ length: 100 }, (_, i) => [`k${i}`, i < 10 ? undefined : { v: 2 }]));
    await untilAllRead([a, b, c], v2);
    for (const t of [b, c]) {
      const stats = t.service.stats();
      expect(stats.invalidations).toBe(100);
      expect(stats.invalidatedChanges).toBe(200);
      expect(stats.notifications).toBeGreaterThanOrEqual(1);
    }
    // A skips its own notifications.
    expect(a.service.stats().notifications).toBe(0);
  });

  it('a batch too large for one notification is split under 8000 bytes, and a key too long for one is announced as "drop all"', async () => {
    const [a, b] = await replicas(2, { maxKeyLength: 6000 });
    const keys = Array.from({ length: 1000 }, (_, i) => `${'long-key-'.repeat(30)}${i}`);
    const huge = 'h'.repeat(5000);
    for (const key of [...keys, huge]) await a.service.set(key, { v: 1 });
    await a.service.flush();
    for (const key of [...keys, huge]) expect(await b.service.get(key)).toEqual({ v: 1 });
    const before = b.service.stats();
    for (const key of keys) await a.service.set(key, { v: 2 });
    await a.service.flush();
    // ~280 kB of keys: dozens of notifications, each below Postgres's limit (a larger one would fail the flush).
    await until(() => b.service.stats().invalidatedChanges >= before.invalidatedChanges + 1000, 5000, 'every change announced');
    expect(b.service.stats().notifications - before.notifications).toBeGreaterThan(30);
    expect(await b.service.get(keys[999])).toEqual({ v: 2 });
    await a.service.set(huge, { v: 2 });
    await a.service.flush();
    await until(async () => JSON.stringify(await b.service.get(huge)) === '{"v":2}', 5000, 'the long key invalidated');
  });

  it('writes of each client through random replicas: Postgres and every replica end with the last acknowledged value', async () => {
    const instances = await replicas(3, { autoFlush: true, flushIntervalMs: 50 });
    const last = new Map<string, unknown>();
    /** Per key: instance, operation and version of each write, for the failure message. */
    const history = new Map<string, string[]>();
    const random = seededRandom(42);
    // Three clients, each with its own 100 keys, every write through a random replica.
    for (let round = 0; round < 10; round++) {
      // Two writes of one key through different instances, with nothing observed in between, are ordered by the
      // wall clock when at least one version unit (256 µs) apart, as a client's successive requests are: a round
      // rewrites each key once, and each round starts a millisecond after the last.
      const roundStart = Date.now();
      await until(() => Date.now() > roundStart + 1, 1000, 'the next millisecond');
      for (let client = 0; client < 3; client++) {
        for (let k = 0; k < 100; k++) {
          const key = `c${client}:${k}`;
          const which = random(3);
          const t = instances[which];
          const remove = random(10) === 0;
          if (remove) {
            await t.service.delete(key);
            last.set(key, undefined);
          } else {
            await t.service.set(key, { round, client });
            last.set(key, { round, client });
          }
          const version = (t.service as unknown as { cache: { dirty: { get(k: string): { version: number } | undefined } } }).cache.dirty.get(key)?.version;
          history.set(key, [...(history.get(key) ?? []), `r${round}@${which}:${remove ? 'del' : 'set'}:${version}`]);
          // Reads through random replicas meanwhile fill their clean caches.
          await instances[random(3)].service.get(`c${random(3)}:${random(100)}`);
        }
      }
    }
    await Promise.all(instances.map((t) => t.service.flush()));
    const rows = await tableRows(instances[0].sql);
    for (const [key, value] of last) {
      if (JSON.stringify(rows.get(key)?.value) === JSON.stringify(value)) continue;
      const { rows: tombstone } = await instances[0].sql.query('SELECT version::text FROM write_back_tombstones WHERE key = $1', [key]);
      const state = `row version ${rows.get(key)?.version}, tombstone ${tombstone[0]?.version}, writes ${history.get(key)!.join(' ')}`;
      expect(rows.get(key)?.value, `${key}: ${state}`).toEqual(value);
    }
    await untilAllRead(instances, last);
  });

  it('instances flushing the same keys at once lock them in one order: no deadlock (40P01)', async () => {
    const instances = await replicas(3, { batchSize: 200 });
    const keys = Array.from({ length: 1000 }, (_, i) => `shared:${i}`);
    const random = seededRandom(7);
    const shuffled = () => [...keys].sort(() => random(3) - 1);
    for (let round = 0; round < 3; round++) {
      // Each instance queues the keys in its own order, so its batches hold them in that order.
      for (const [n, t] of instances.entries()) for (const key of shuffled()) await t.service.set(key, { round, n });
      await Promise.all(instances.map((t) => t.service.flush()));
    }
    expect(instances.map((t) => t.service.stats().flushErrors)).toEqual([0, 0, 0]);
  });

  it('a write made after observing a replica whose clock runs 5 s ahead wins, read or not', async () => {
    const [a, b] = await replicas(2);
    skewClock(b.service, 5000);
    await b.service.set('read-then-write', { from: 'b' });
    await b.service.set('blind', { from: 'b' });
    await b.service.flush();
    // A reads one key (observes its version) and hears of both through the notification.
    expect(await a.service.get('read-then-write')).toEqual({ from: 'b' });
    await until(() => a.service.stats().invalidatedChanges >= 2, 5000, 'the notification of B');
    await a.service.set('read-then-write', { from: 'a' });
    await a.service.set('blind', { from: 'a' });
    expect(await a.service.flush()).toMatchObject({ committed: 2 });
    const rows = await tableRows(a.sql);
    expect(rows.get('read-then-write')?.value).toEqual({ from: 'a' });
    expect(rows.get('blind')?.value).toEqual({ from: 'a' });
    await untilAllRead([a, b], new Map([['blind', { from: 'a' }], ['read-then-write', { from: 'a' }]]));
  });

  it('an upsert that waited for a newer delete of its key committed elsewhere loses to it (revived only older tombstones)', async () => {
    const [b] = await replicas(1);
    const { sql } = b;
    // An old tombstone; another "instance" raises it to a version above B's write and holds the row lock.
    await sql.query(`INSERT INTO write_back_tombstones (key, version, deleted_at) VALUES ('k', 1, now())`);
    const other = await connectSql(b.schema);
    try {
      await other.query('BEGIN');
      const newer = (Date.now() + 60_000) * 1000;
      await other.query(`UPDATE write_back_tombstones SET version = $1 WHERE key = 'k'`, [newer]);
      await b.service.set('k', { from: 'b' });
      const flushing = b.service.flush();
      await until(
        async () =>
          (await sql.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND position($1 in query) > 0`, [`"${b.schema}"`]))
            .rowCount! > 0,
        10_000,
        'the flush to wait for the tombstone row',
      );
      await other.query('COMMIT');
      await flushing;
      expect((await tableRows(sql)).has('k')).toBe(false);
      expect((await sql.query(`SELECT version::text FROM write_back_tombstones WHERE key = 'k'`)).rows[0]?.version).toBe(String(newer));
    } finally {
      await other.end();
    }
  });

  it('a pending write older than another instance\'s commit is dropped as superseded; reads get the committed value', async () => {
    const [a, b] = await replicas(2, { durability: 'none' });
    await b.service.set('k', { from: 'b' });
    await b.service.set('other', { from: 'b' });
    skewClock(a.service, 1000);
    await a.service.set('k', { from: 'a' });
    await a.service.flush();
    await until(() => b.service.stats().superseded === 1, 5000, 'B to drop its older pending write');
    expect(b.service.stats().dirty).toBe(1);
    expect(await b.service.get('k')).toEqual({ from: 'a' });
    expect(await b.service.flush()).toMatchObject({ requested: 1, committed: 1 });
    const rows = await tableRows(a.sql);
    expect(rows.get('k')?.value).toEqual({ from: 'a' });
    expect(rows.get('other')?.value).toEqual({ from: 'b' });
  });

  it('an instance started after the others starts its clock above every committed version', async () => {
    const [a] = await replicas(1);
    skewClock(a.service, 5000);
    await a.service.set('k', { from: 'a' });
    await a.service.flush();
    const [late] = await replicas(1, { schema: a.schema });
    // A blind write (never read, no notification seen): it must still be above A's version.
    await late.service.set('k', { from: 'late' });
    await late.service.flush();
    expect((await tableRows(late.sql)).get('k')?.value).toEqual({ from: 'late' });
    await untilAllRead([a, late], new Map([['k', { from: 'late' }]]));
  });

  it('while the listen connection is down no clean copy is served; after it reconnects invalidation works again', async () => {
    const [a, b] = await replicas(2, { retryBaseDelayMs: 200, retryMaxDelayMs: 400 });
    await a.service.set('k', { v: 1 });
    await a.service.flush();
    expect(await b.service.get('k')).toEqual({ v: 1 });
    await a.sql.query('SELECT pg_terminate_backend($1)', [listenerPid(b.service)]);
    await until(() => b.service.stats().listener === 'down', 5000, 'B to notice its listener is gone');
    expect(b.service.stats().cleanEntries).toBe(0);
    // A commits while B hears nothing: B reads Postgres, not its old copy.
    await a.service.set('k', { v: 2 });
    await a.service.flush();
    const loads = b.service.stats().loads;
    expect(await b.service.get('k')).toEqual({ v: 2 });
    if (b.service.stats().listener === 'down') {
      expect(await b.service.get('k')).toEqual({ v: 2 });
      expect(b.service.stats().loads).toBeGreaterThanOrEqual(loads + 2);
    }
    await until(() => b.service.stats().listener === 'listening', 10_000, 'B to listen again');
    expect(b.service.stats().listenerDisconnects).toBe(1);
    expect(await b.service.get('k')).toEqual({ v: 2 });
    await a.service.set('k', { v: 3 });
    await a.service.flush();
    await untilAllRead([b], new Map([['k', { v: 3 }]]));
  });

  it('singleInstance: a delete of a key Postgres does not hold leaves no row behind (its placeholder is removed)', async () => {
    const t = await startWriteBack({ singleInstance: true });
    try {
      await t.service.set('kept', 1);
      await t.service.delete('never-written');
      await t.service.delete('kept');
      await t.service.set('back', 2);
      await t.service.flush();
      expect([...(await tableRows(t.sql)).keys()]).toEqual(['back']);
    } finally {
      await t.close();
    }
  });

    it('singleInstance: no listener, no notifications', async () => {
    const t = await startWriteBack({ singleInstance: true });
    apps.push(t);
    expect(t.service.stats().listener).toBe('off');
    await t.service.set('k', 1);
    await t.service.flush();
    expect(await t.service.get('k')).toBe(1);
    expect(t.service.stats().hits).toBe(1);
  });
});
