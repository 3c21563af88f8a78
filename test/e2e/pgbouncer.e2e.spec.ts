import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { databaseUrl, freshSchema, isPglite, lockTable, tableRows, WRITE_BACK_MIGRATION_NAMES } from '../support/database.js';
import { pgbouncerSkipReason, startPgBouncer, type PgBouncer } from '../support/pgbouncer.js';
import { until } from '../support/wait.js';
import { startWriteBack, type WriteBackTestApp } from '../support/write-back-app.js';

const skipReason = pgbouncerSkipReason(isPglite());

/** The server behind PgBouncer: the test run's Postgres. */
function server(): { host: string; port: number } {
  const url = new URL(databaseUrl());
  return { host: url.hostname, port: Number(url.port || 5432) };
}

/** A plain client through PgBouncer (each statement outside a transaction may land on another server connection). */
async function bouncerClient(bouncer: PgBouncer): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: bouncer.url(databaseUrl()) });
  await client.connect();
  return client;
}

describe.skipIf(skipReason !== undefined)(
  `behind PgBouncer 1.18 in transaction mode: no session state${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const apps: WriteBackTestApp[] = [];
    const clients: pg.Client[] = [];
    let bouncer: PgBouncer | undefined;

    afterEach(async () => {
      await Promise.all(apps.splice(0).map((app) => app.close()));
      await Promise.all(clients.splice(0).map((client) => client.end().catch(() => undefined)));
      await bouncer?.stop();
      bouncer = undefined;
    });

    async function start(options: Parameters<typeof startWriteBack>[0] = {}): Promise<WriteBackTestApp> {
      const app = await startWriteBack({ url: bouncer!.url(databaseUrl()), ...options });
      apps.push(app);
      return app;
    }

    it('starts with default options, writes, deletes, reads uncached rows and dead letters through it', async () => {
      bouncer = await startPgBouncer(server());
      const t = await start();
      for (let i = 0; i < 200; i++) await t.service.set(`k${i}`, { i, text: `it's $wb$ a \\ value` });
      for (let i = 0; i < 20; i++) await t.service.delete(`k${i}`);
      await t.service.set('poison', { s: 'x' });
      await t.sql.query(`ALTER TABLE write_back_entries ADD CONSTRAINT no_poison CHECK (key <> 'poison')`);
      expect(await t.service.flush()).toMatchObject({ requested: 201, committed: 200, deadLettered: 1 });
      const rows = await tableRows(t.sql);
      expect(rows.size).toBe(180);
      expect(rows.get('k50')?.value).toEqual({ i: 50, text: `it's $wb$ a \\ value` });
      const letters = await t.service.listDeadLetters();
      expect(letters).toMatchObject([{ key: 'poison', errorCode: '23514', operation: 'upsert', value: { s: 'x' } }]);
      expect(await t.service.countDeadLetters()).toBe(1);

      // A second instance on the same tables reads every row from Postgres (nothing cached), through PgBouncer.
      const other = await start({ schema: t.schema });
      expect(await other.service.get('k50')).toEqual({ i: 50, text: `it's $wb$ a \\ value` });
      expect(await other.service.get('k5')).toBeUndefined();
      expect(await other.service.get(`quote'$wb$key\\`)).toBeUndefined();
    });

    it('enforces statementTimeoutMs on the module statement although another client left statement_timeout = 4321s on the server connection', async () => {
      // One server connection: what the planting client leaves on it is what the module's statements run on.
      bouncer = await startPgBouncer(server(), { poolSize: 1 });
      const planter = await bouncerClient(bouncer);
      clients.push(planter);
      await planter.query(`SET statement_timeout = '4321s'`);
      const t = await start({ statementTimeoutMs: 300, retryBaseDelayMs: 20, retryMaxDelayMs: 100 });
      for (let i = 0; i < 50; i++) await t.service.set(`slow${i}`, { i });
      const lock = await lockTable(t);
      const flushing = t.service.flush();
      try {
        // The batch waits on the lock; Postgres cancels it after 300 ms (57014) and the flusher retries it as transient.
        await until(() => t.service.stats().retries >= 2, 10_000, 'the blocked flush to be cancelled and retried twice');
        const stats = t.service.stats();
        expect(stats.lastError?.code).toBe('57014');
        expect(stats.deadLettered).toBe(0);
        expect(stats.dirty).toBe(50);
      } finally {
        await lock.release();
      }
      expect(await flushing).toMatchObject({ requested: 50, committed: 50, deadLettered: 0 });
      expect((await tableRows(t.sql)).size).toBe(50);
      // The module's SET LOCAL ended with its statements: the session setting on the server connection is untouched.
      expect((await planter.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('4321s');
    });

    it('a statement_timeout of 150 ms planted by another client does not reach the module statements', async () => {
      bouncer = await startPgBouncer(server(), { poolSize: 1 });
      const planter = await bouncerClient(bouncer);
      clients.push(planter);
      const t = await start({ batchSize: 20_000, maxDirtyEntries: 20_000 });
      // The first statement of each query string (the set_config, microseconds) still starts under the session's
      // value; everything after it runs under the module's own.
      await planter.query(`SET statement_timeout = 150`);
      await planter.query(`SET lock_timeout = 1`);
      // A batch of 20,000 rows takes Postgres well over 150 ms: under the planted setting it would fail with 57014.
      for (let i = 0; i < 20_000; i++) await t.service.set(`p${i}`, { i, pad: 'x'.repeat(100) });
      expect(await t.service.flush({ timeoutMs: 20_000 })).toMatchObject({ requested: 20_000, committed: 20_000 });
      expect(t.service.stats().flushErrors).toBe(0);
      const other = await start({ schema: t.schema });
      expect(await other.service.get('p19999')).toEqual({ i: 19_999, pad: 'x'.repeat(100) });
      expect(await other.service.countDeadLetters()).toBe(0);
      expect((await planter.query('SHOW statement_timeout')).rows[0].statement_timeout).toBe('150ms');
    });

    it('three instances starting at once on a busy PgBouncer migrate exactly once and all serve', async () => {
      bouncer = await startPgBouncer(server(), { poolSize: 3 });
      // Other clients keep every server connection busy with short transactions, so consecutive transactions of
      // one client land on different server connections.
      let busy = true;
      const load = Array.from({ length: 6 }, async () => {
        const client = await bouncerClient(bouncer!);
        clients.push(client);
        while (busy) await client.query('SELECT pg_sleep(0.002)');
      });
      try {
        const schema = freshSchema();
        const started = await Promise.all([start({ schema }), start({ schema }), start({ schema })]);
        const { rows } = await started[0].sql.query('SELECT name FROM write_back_migrations ORDER BY id');
        expect(rows.map((r) => r.name)).toEqual(WRITE_BACK_MIGRATION_NAMES);
        for (const [n, t] of started.entries()) await t.service.set(`from${n}`, { n });
        await Promise.all(started.map((t) => t.service.flush()));
        expect([...(await tableRows(started[0].sql)).keys()]).toEqual(['from0', 'from1', 'from2']);
        // Nothing was left locked: a fourth start (a restart) migrates nothing and does not wait.
        const fourth = await start({ schema });
        expect(await fourth.service.get('from2')).toEqual({ n: 2 });
      } finally {
        busy = false;
        await Promise.all(load);
      }
    });

    it('a PgBouncer restart in the middle of writes loses nothing and dead-letters nothing', async () => {
      bouncer = await startPgBouncer(server());
      const t = await start({ autoFlush: true, flushIntervalMs: 20, batchSize: 200, retryBaseDelayMs: 10, retryMaxDelayMs: 200 });
      const acknowledged = new Map<string, number>();
      let writing = true;
      let written = 0;
      const writer = (async () => {
        for (let i = 0; writing; i++) {
          const key = `r${i % 1000}`;
          await t.service.set(key, { i });
          acknowledged.set(key, i);
          written++;
          if (i % 200 === 0) await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      try {
        await until(() => t.service.stats().flushes >= 5, 10_000, 'flushes before the restart');
        await bouncer.restart();
        const flushesAfter = t.service.stats().flushes;
        await until(() => t.service.stats().flushes >= flushesAfter + 5, 20_000, 'flushes after the restart');
      } finally {
        writing = false;
        await writer;
      }
      expect(written).toBeGreaterThan(1000);
      await t.service.flush({ timeoutMs: 20_000 });
      const rows = await tableRows(t.sql);
      expect(rows.size).toBe(acknowledged.size);
      for (const [key, i] of acknowledged) expect(rows.get(key)?.value).toEqual({ i });
      expect(t.service.stats().deadLettered).toBe(0);
      // Reads of rows this instance does not hold go through the restarted PgBouncer as well.
      const other = await start({ schema: t.schema });
      expect(await other.service.get('r999')).toEqual({ i: acknowledged.get('r999') });
    });
  },
);
