import { afterEach, describe, expect, it } from 'vitest';
import { WriteBackInvalidDeltaError } from '../../src/write-back/index.js';
import { databaseUrl, freshSchema, isPglite, NEEDS_SERVER, tableRows } from '../support/database.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { tempDir } from '../support/temp-dir.js';
import { until } from '../support/wait.js';
import { copyWalDir } from '../support/wal.js';
import { startWriteBack, type WriteBackTestApp } from '../support/write-back-app.js';

describe('increment and merge on Postgres: coalesced deltas applied exactly once', () => {
  const open: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    while (open.length > 0) await open.pop()!.close();
  });
  const start = async (options: Parameters<typeof startWriteBack>[0] = {}) => {
    const t = await startWriteBack(options);
    open.push(t);
    return t;
  };
  const row = async (t: WriteBackTestApp, key: string) => (await tableRows(t.sql)).get(key)?.value;

  it('coalesces increments of a key into one row write, adds to what the row holds, reads the sum before the flush', async () => {
    const t = await start();
    await t.sql.query(`INSERT INTO write_back_entries (key, value, version) VALUES ('views', '40', 1), ('stats', '{"likes": 2, "title": "x"}', 1)`);
    for (let i = 0; i < 100; i++) await t.service.increment('views', 1);
    await t.service.increment('stats', { likes: 3, shares: 1 });
    await t.service.increment('fresh', 5);
    expect(await t.service.get('views')).toBe(140);
    expect(await t.service.get('stats')).toEqual({ likes: 5, title: 'x', shares: 1 });
    expect(await t.service.get('fresh')).toBe(5);
    const before = t.service.stats();
    expect(before.coalesced).toBeGreaterThanOrEqual(99);
    const report = await t.service.flush();
    expect(report).toMatchObject({ requested: 3, committed: 3, deadLettered: 0 });
    expect(t.service.stats().flushedEntries - before.flushedEntries).toBe(3);
    expect(await row(t, 'views')).toBe(140);
    expect(await row(t, 'stats')).toEqual({ likes: 5, title: 'x', shares: 1 });
    expect(await row(t, 'fresh')).toBe(5);
    // Another writer changes the row: this instance adds to it rather than overwriting it.
    await t.sql.query(`UPDATE write_back_entries SET value = '1000' WHERE key = 'views'`);
    await t.service.increment('views', 1);
    await t.service.flush();
    expect(await row(t, 'views')).toBe(1001);
    expect(await t.service.get('views')).toBe(1001);
  });

  it('merges patches (RFC 7396) into the stored object without touching other fields; null removes', async () => {
    const t = await start();
    await t.sql.query(`INSERT INTO write_back_entries (key, value, version) VALUES ('user', '{"name": "Ada", "prefs": {"theme": "dark", "lang": "en"}, "tmp": 1}', 1)`);
    await t.service.merge('user', { prefs: { lang: 'fr' } });
    await t.service.merge('user', { tmp: null, lastSeen: 't1' });
    expect(await t.service.get('user')).toEqual({ name: 'Ada', prefs: { theme: 'dark', lang: 'fr' }, lastSeen: 't1' });
    // Meanwhile another writer sets a field this instance never touched: it survives the flush.
    await t.sql.query(`UPDATE write_back_entries SET value = value || '{"role": "admin"}' WHERE key = 'user'`);
    await t.service.flush();
    expect(await row(t, 'user')).toEqual({ name: 'Ada', prefs: { theme: 'dark', lang: 'fr' }, lastSeen: 't1', role: 'admin' });
  });

  it('set after deltas replaces them, deltas after a set apply to it, delete clears them', async () => {
    const t = await start();
    await t.service.increment('a', 5);
    await t.service.set('a', 100);
    await t.service.increment('a', 1);
    expect(await t.service.get('a')).toBe(101);
    await t.service.merge('b', { x: 1 });
    await t.service.delete('b');
    expect(await t.service.get('b')).toBeUndefined();
    await t.service.increment('b', { n: 2 });
    expect(await t.service.get('b')).toEqual({ n: 2 });
    await t.service.flush();
    expect(await row(t, 'a')).toBe(101);
    expect(await row(t, 'b')).toEqual({ n: 2 });
  });

  it('refuses bad deltas at the call and changes nothing', async () => {
    const t = await start();
    await t.service.set('num', 1);
    await t.service.set('obj', { a: 'text' });
    const bad: [string, () => Promise<void>][] = [
      ['NaN', () => t.service.increment('x', Number.NaN)],
      ['fraction', () => t.service.increment('x', 0.5)],
      ['unsafe', () => t.service.increment('x', 2 ** 53)],
      ['empty object', () => t.service.increment('x', {})],
      ['field not a number', () => t.service.increment('x', { a: '1' as unknown as number })],
      ['increment a non-number field', () => t.service.increment('obj', { a: 1 })],
      ['number increment of an object', () => t.service.increment('obj', 1)],
      ['field increment of a number', () => t.service.increment('num', { a: 1 })],
      ['overflow', () => t.service.increment('num', Number.MAX_SAFE_INTEGER)],
      ['patch not an object', () => t.service.merge('x', [1] as unknown as Record<string, unknown>)],
    ];
    for (const [what, call] of bad) await expect(call(), what).rejects.toBeInstanceOf(WriteBackInvalidDeltaError);
    await t.service.increment('mixed', 1);
    await expect(t.service.increment('mixed', { a: 1 })).rejects.toBeInstanceOf(WriteBackInvalidDeltaError);
    expect(await t.service.get('num')).toBe(1);
    expect(await t.service.get('obj')).toEqual({ a: 'text' });
    expect(await t.service.get('x')).toBeUndefined();
    expect(await t.service.get('mixed')).toBe(1);
  });

  it('dead-letters a delta the stored row cannot take, naming key and reason, and replays it exactly once', async () => {
    const t = await start({ maxRetries: 1 });
    await t.sql.query(`INSERT INTO write_back_entries (key, value, version) VALUES ('c', '"text"', 1), ('ok', '1', 1)`);
    await t.service.increment('c', 2);
    await t.service.increment('ok', 2);
    const report = await t.service.flush();
    expect(report).toMatchObject({ committed: 1, deadLettered: 1 });
    const [letter] = await t.service.listDeadLetters({ key: 'c' });
    expect(letter).toMatchObject({ key: 'c', operation: 'delta', value: { i: 2 }, errorCode: '22023' });
    expect(letter.errorMessage).toMatch(/key c: a number increment needs a number, the value is string/);
    expect(await row(t, 'ok')).toBe(3);
    // Fixed by hand, then replayed: applied once, even if the replay runs twice (as after a crash before cleanup).
    await t.sql.query(`UPDATE write_back_entries SET value = '10' WHERE key = 'c'`);
    await t.sql.query(
      `INSERT INTO write_back_dead_letters (key, value, version, operation, error_code, error_message, attempts, first_failed_at, last_failed_at)
       SELECT key, value, version, operation, error_code, error_message, attempts, first_failed_at, last_failed_at FROM write_back_dead_letters WHERE id = $1`,
      [letter.id],
    );
    expect(await t.service.replayDeadLetter(letter.id)).toEqual({ requeued: true, outcome: 'committed' });
    expect(await row(t, 'c')).toBe(12);
    // The copy carries another id: it is another dead letter, applied once by its own ledger entry.
    const [copy] = await t.service.listDeadLetters({ key: 'c' });
    await t.sql.query(`INSERT INTO write_back_delta_ledger (origin, key, version) VALUES ($1, 'c', $2)`, [`dead-letter:${copy.id}`, copy.version]);
    await t.service.replayDeadLetter(copy.id);
    expect(await row(t, 'c')).toBe(12);
    expect(await t.service.get('c')).toBe(12);
  });

  it.skipIf(isPglite())(`applies a batch once when the connection dies right after its commit (${NEEDS_SERVER})`, async () => {
    const schema = freshSchema();
    const proxy = await TcpProxy.start(databaseUrl());
    open.push(proxy);
    const t = await start({ url: proxy.url, schema, poolSize: 2, flushConcurrency: 1, retryBaseDelayMs: 1, retryMaxDelayMs: 5 });
    for (let i = 0; i < 50; i++) await t.service.increment(`k${i % 5}`, 1);
    await t.service.increment('obj', { n: 7 });
    proxy.setLatency(300);
    const flushed = t.service.flush();
    // The statement reached Postgres and committed (its ledger rows exist) while the answer is still on its way.
    await until(async () => (await t.sql.query('SELECT count(*)::int AS n FROM write_back_delta_ledger')).rows[0].n === 6, 10_000, 'the commit');
    expect(proxy.cut()).toBeGreaterThan(0);
    proxy.setLatency(0);
    await flushed;
    expect(t.service.stats().retries).toBeGreaterThanOrEqual(1);
    const rows = await tableRows(t.sql);
    for (let i = 0; i < 5; i++) expect(rows.get(`k${i}`)?.value).toBe(10);
    expect(rows.get('obj')?.value).toEqual({ n: 7 });
  });

  it('adds up increments from three instances x 16 writers x 10,000 increments over 100 keys, exactly', async () => {
    const schema = freshSchema();
    const instances = [await start({ schema }), await start({ schema }), await start({ schema })];
    const expected = new Map<string, number>();
    let writes = 0;
    await Promise.all(
      instances.flatMap((t, i) =>
        Array.from({ length: 16 }, async (_, writer) => {
          for (let n = 0; n < 10_000; n++) {
            const key = `counter:${(n * 7 + writer + i) % 100}`;
            const by = 1 + ((n + writer) % 3);
            expected.set(key, (expected.get(key) ?? 0) + by);
            writes++;
            await t.service.increment(key, by);
            // Flushes while others keep counting, from every instance: increments race with commits.
            if (n % 2500 === 0 && writer === 0) void t.service.flush();
          }
        }),
      ),
    );
    expect(writes).toBe(480_000);
    for (const t of instances) await t.service.flush();
    const rows = await tableRows(instances[0].sql);
    expect(rows.size).toBe(100);
    for (const [key, sum] of expected) expect(rows.get(key)?.value, key).toBe(sum);
    for (const t of instances) {
      for (const [key, sum] of expected) expect(await t.service.get(key), key).toBe(sum);
    }
  }, 120_000);

  it('keeps merges of different fields from two instances, and the later version of the same field', async () => {
    const schema = freshSchema();
    const a = await start({ schema });
    const b = await start({ schema });
    await a.service.set('profile', { name: 'Ada' });
    await a.service.flush();
    await a.service.merge('profile', { city: 'London', theme: 'a' });
    await b.service.merge('profile', { lang: 'en', theme: 'b' });
    await a.service.flush();
    await b.service.flush();
    expect(await row(a, 'profile')).toEqual({ name: 'Ada', city: 'London', lang: 'en', theme: 'b' });
  });

  it('replays a crashed WAL: what was committed is not counted twice, what was not is counted once', async () => {
    const schema = freshSchema();
    const walDir = await tempDir('write-back-delta-wal-');
    const a = await start({ schema, durability: 'wal-sync', walDir });
    await a.service.set('base', { n: 1 });
    await a.service.increment('c', 5);
    await a.service.increment('base', { n: 2 }); // applies to the value in memory: logged as a value
    await a.service.merge('m', { x: 1 });
    // The disk as a kill -9 would leave it: every write acknowledged (fsynced), nothing flushed yet.
    const image = await copyWalDir(walDir);
    await a.service.flush();
    const rows = async (t: WriteBackTestApp) => Object.fromEntries([...(await tableRows(t.sql))].map(([k, v]) => [k, v.value]));
    const expected = { base: { n: 3 }, c: 5, m: { x: 1 } };
    expect(await rows(a)).toEqual(expected);
    await a.close();

    // Restarted on that image after the flush had committed (the crash came before the log was trimmed).
    const b = await start({ schema, durability: 'wal-sync', walDir: await copyWalDir(image) });
    expect(b.service.stats().dirty).toBe(3);
    await b.service.flush();
    expect(await rows(b)).toEqual(expected);

    // Restarted on that image where nothing had been committed: counted once.
    const other = freshSchema();
    const c = await start({ schema: other, durability: 'wal-sync', walDir: await copyWalDir(image) });
    await c.service.flush();
    expect(await rows(c)).toEqual(expected);
  });

  it('sweeps ledger rows older than deltaLedgerRetentionMs; keeps newer ones and those of dead letters that still exist', async () => {
    const t = await start({ deltaLedgerRetentionMs: 60_000 });
    await t.service.increment('old', 1);
    await t.service.increment('new', 1);
    await t.service.flush();
    const origin = (await t.sql.query(`SELECT origin FROM write_back_delta_ledger WHERE key = 'old'`)).rows[0].origin as string;
    const { rows } = await t.sql.query(
      `INSERT INTO write_back_dead_letters (key, value, version, operation, error_message, attempts, first_failed_at, last_failed_at)
       VALUES ('dl', '{"i": 1}', 1, 'delta', 'x', 1, now(), now()) RETURNING id::text AS id`,
    );
    await t.sql.query(
      `INSERT INTO write_back_delta_ledger (origin, key, version) VALUES ($1, 'dl', 1), ('dead-letter:999999999', 'gone', 1)`,
      [`dead-letter:${rows[0].id}`],
    );
    await t.sql.query(`UPDATE write_back_delta_ledger SET applied_at = now() - interval '2 minutes' WHERE key <> 'new'`);
    await t.service.sweepTombstones();
    const left = (await t.sql.query('SELECT origin, key FROM write_back_delta_ledger ORDER BY key')).rows;
    expect(left.map((r) => r.key)).toEqual(['dl', 'new']);
    expect(left.every((r) => r.origin !== origin || r.key === 'new')).toBe(true);
  });

  // Invalidation travels by LISTEN/NOTIFY between connections, which embedded PGlite does not deliver (as in replicas.e2e).
  it.skipIf(isPglite())(`another instance reads the sum soon after a commit, even when it held a copy (invalidation of delta commits) (${NEEDS_SERVER})`, async () => {
    const schema = freshSchema();
    const a = await start({ schema });
    const b = await start({ schema });
    await b.service.set('likes', 10);
    await b.service.flush();
    expect(await a.service.get('likes')).toBe(10); // a now holds a clean copy
    await b.service.increment('likes', 5);
    await b.service.flush();
    await until(async () => (await a.service.get('likes')) === 15, 10_000, 'a reads the sum');
    await a.service.increment('likes', 1);
    await a.service.flush();
    await until(async () => (await b.service.get('likes')) === 16, 10_000, 'b reads the sum');
  });
});
