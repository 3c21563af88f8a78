import { afterEach, describe, expect, it } from 'vitest';
import { tableRows } from '../support/database.js';
import { until } from '../support/wait.js';
import { startWriteBack, type WriteBackTestApp } from '../support/write-back-app.js';

describe('WriteBackService semantics on Postgres', () => {
  let t: WriteBackTestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('reads its own writes before any flush, and a flush persists exactly what was written', async () => {
    t = await startWriteBack();
    const values = new Map<string, unknown>();
    for (let i = 0; i < 250; i++) {
      const value = { i, name: `item-${i}`, tags: ['a', 'b'], nested: { ok: i % 2 === 0 } };
      values.set(`k:${i}`, value);
      await t.service.set(`k:${i}`, value);
    }
    await t.service.set('text', 'plain string');
    await t.service.set('number', 42);
    await t.service.set('null', null);
    for (const [key, value] of values) expect(await t.service.get(key)).toEqual(value);
    expect(await t.service.get('null')).toBeNull();
    expect((await tableRows(t.sql)).size).toBe(0);

    const report = await t.service.flush();
    expect(report).toMatchObject({ requested: 253, committed: 253, deadLettered: 0 });
    const rows = await tableRows(t.sql);
    expect(rows.size).toBe(253);
    for (const [key, value] of values) expect(rows.get(key)?.value).toEqual(value);
    expect(rows.get('text')?.value).toBe('plain string');
    expect(rows.get('number')?.value).toBe(42);
    expect(rows.get('null')?.value).toBeNull();
    expect(t.service.stats()).toMatchObject({ dirty: 0, inFlight: 0, flushedEntries: 253 });
  });

  it('snapshots the value at set: mutating the caller object changes neither cache nor table', async () => {
    t = await startWriteBack();
    const value = { count: 1, list: [1] };
    await t.service.set('snap', value);
    value.count = 99;
    value.list.push(2);
    expect(await t.service.get('snap')).toEqual({ count: 1, list: [1] });
    const copy = await t.service.get<{ count: number }>('snap');
    copy!.count = 7;
    expect(await t.service.get('snap')).toEqual({ count: 1, list: [1] });
    await t.service.flush();
    expect((await tableRows(t.sql)).get('snap')?.value).toEqual({ count: 1, list: [1] });
  });

  it('coalesces 1,000 writes to one key into one row write', async () => {
    t = await startWriteBack();
    await t.service.flush();
    // Count the row writes Postgres really performs.
    await t.sql.query(`CREATE TABLE row_writes (n bigint NOT NULL)`);
    await t.sql.query(`INSERT INTO row_writes VALUES (0)`);
    await t.sql.query(`
      CREATE FUNCTION count_row_write() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN UPDATE ${t.schema}.row_writes SET n = n + 1; RETURN NEW; END $$`);
    await t.sql.query(`
      CREATE TRIGGER count_row_write AFTER INSERT OR UPDATE ON write_back_entries
      FOR EACH ROW EXECUTE FUNCTION count_row_write()`);
    for (let i = 0; i < 1000; i++) await t.service.set('hot', { i });
    expect(t.service.stats().coalesced).toBe(999);
    await t.service.flush();
    const { rows } = await t.sql.query('SELECT n FROM row_writes');
    expect(Number(rows[0].n)).toBe(1);
    expect((await tableRows(t.sql)).get('hot')?.value).toEqual({ i: 999 });
  });

  it('deletes: reads undefined at once, removes the row at flush, and a later set revives the key', async () => {
    t = await startWriteBack();
    await t.service.set('d1', { v: 1 });
    await t.service.set('d2', { v: 2 });
    await t.service.flush();
    await t.service.delete('d1');
    expect(await t.service.get('d1')).toBeUndefined();
    expect(t.service.stats().loads).toBe(0);
    await t.service.flush();
    let rows = await tableRows(t.sql);
    expect(rows.has('d1')).toBe(false);
    expect(rows.get('d2')?.value).toEqual({ v: 2 });
    expect(await t.service.get('d1')).toBeUndefined();

    await t.service.delete('d2');
    await t.service.set('d2', { v: 3 });
    await t.service.flush();
    rows = await tableRows(t.sql);
    expect(rows.get('d2')?.value).toEqual({ v: 3 });
    // A delete of a key never written is a no-op row-wise.
    await t.service.delete('never');
    await expect(t.service.flush()).resolves.toMatchObject({ committed: 1 });
  });

  it('never moves the table backwards: an older version does not overwrite or delete a newer row', async () => {
    t = await startWriteBack();
    await t.service.set('g', { from: 'cache' });
    await t.service.delete('h');
    const future = (Date.now() + 3_600_000) * 1000;
    await t.sql.query(
      `INSERT INTO write_back_entries (key, value, version, updated_at) VALUES ('g', '{"from":"newer"}', $1, now()), ('h', '{"from":"newer"}', $1, now())`,
      [future],
    );
    await expect(t.service.flush()).resolves.toMatchObject({ committed: 2, deadLettered: 0 });
    const rows = await tableRows(t.sql);
    expect(rows.get('g')).toEqual({ value: { from: 'newer' }, version: future });
    expect(rows.get('h')).toEqual({ value: { from: 'newer' }, version: future });
  });

  it('versions grow per key and compare across two instances on one table', async () => {
    t = await startWriteBack();
    const other = await startWriteBack({ schema: t.schema, runMigrations: false });
    try {
      await t.service.set('shared', { by: 'first' });
      await other.service.set('shared', { by: 'second' });
      // The second write is newer; flushing it first and the older one after must keep the newer.
      await other.service.flush();
      await t.service.flush();
      const rows = await tableRows(t.sql);
      expect(rows.get('shared')?.value).toEqual({ by: 'second' });
      // A key loaded from the table gets versions above the stored one.
      const fresh = await startWriteBack({ schema: t.schema, runMigrations: false });
      try {
        expect(await fresh.service.get('shared')).toEqual({ by: 'second' });
        await fresh.service.set('shared', { by: 'third' });
        await fresh.service.flush();
        const after = await tableRows(t.sql);
        expect(after.get('shared')?.value).toEqual({ by: 'third' });
        expect(after.get('shared')!.version).toBeGreaterThan(rows.get('shared')!.version);
      } finally {
        await fresh.close();
      }
    } finally {
      await other.close();
    }
  });

  it('loads a miss once for concurrent readers and caches it clean', async () => {
    t = await startWriteBack();
    await t.sql.query(`INSERT INTO write_back_entries VALUES ('cold', '{"x":1}', 5, now())`);
    const results = await Promise.all(Array.from({ length: 200 }, () => t!.service.get('cold')));
    expect(results.every((r) => JSON.stringify(r) === '{"x":1}')).toBe(true);
    expect(await t.service.get('missing')).toBeUndefined();
    const stats = t.service.stats();
    expect(stats.loads).toBe(2);
    expect(stats.cleanEntries).toBe(1);
    await t.service.get('cold');
    expect(t.service.stats().loads).toBe(2);
    // A write after the load uses a version above the loaded one, so it wins in the table.
    await t.service.set('cold', { x: 2 });
    await t.service.flush();
    expect((await tableRows(t.sql)).get('cold')?.value).toEqual({ x: 2 });
  });

  it('bounds clean entries by maxEntries but never evicts dirty ones', async () => {
    t = await startWriteBack({ maxEntries: 10 });
    for (let i = 0; i < 100; i++) await t.service.set(`e${i}`, i);
    for (let i = 0; i < 100; i++) expect(await t.service.get(`e${i}`)).toBe(i);
    expect(t.service.stats().loads).toBe(0);
    await t.service.flush();
    const stats = t.service.stats();
    expect(stats.dirty).toBe(0);
    expect(stats.cleanEntries).toBe(10);
    // Evicted entries come back from Postgres.
    expect(await t.service.get('e0')).toBe(0);
    expect(t.service.stats().loads).toBe(1);
  });

  it('flushes high before normal before low', async () => {
    t = await startWriteBack({ batchSize: 1, flushConcurrency: 1 });
    await t.sql.query(`CREATE TABLE flush_order (seq bigserial, key text)`);
    await t.sql.query(`
      CREATE FUNCTION log_flush_order() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO ${t.schema}.flush_order (key) VALUES (NEW.key); RETURN NEW; END $$`);
    await t.sql.query(`CREATE TRIGGER log_flush_order AFTER INSERT ON write_back_entries FOR EACH ROW EXECUTE FUNCTION log_flush_order()`);
    await t.service.set('low-1', 1, { priority: 'low' });
    await t.service.set('normal-1', 1);
    await t.service.set('high-1', 1, { priority: 'high' });
    await t.service.set('low-2', 1, { priority: 'low' });
    await t.service.set('normal-2', 1, { priority: 'normal' });
    await t.service.set('high-2', 1, { priority: 'high' });
    // A later high write to a queued low key moves it up.
    await t.service.set('low-2', 2, { priority: 'high' });
    await t.service.flush();
    const { rows } = await t.sql.query('SELECT key FROM flush_order ORDER BY seq');
    expect(rows.map((r) => r.key)).toEqual(['high-1', 'high-2', 'low-2', 'normal-1', 'normal-2', 'low-1']);
  });

  it('starts a flush early for a high write and when batchSize entries are dirty', async () => {
    t = await startWriteBack({ autoFlush: true, flushIntervalMs: 600_000, highPriorityDelayMs: 5, batchSize: 50 });
    await t.service.set('urgent', 1, { priority: 'high' });
    await until(async () => (await tableRows(t!.sql)).has('urgent'), 5000, 'the high write to be flushed');
    for (let i = 0; i < 49; i++) await t.service.set(`b${i}`, i);
    expect(t.service.stats().flushes).toBe(1);
    await t.service.set('b49', 49);
    await until(async () => (await tableRows(t!.sql)).size === 51, 5000, 'a full batch to be flushed');
  });

  it('a hot key written again after its early flush waits for the next interval; its later writes coalesce into one row write', async () => {
    t = await startWriteBack({ autoFlush: true, flushIntervalMs: 600_000, batchSize: 5 });
    for (let i = 0; i < 5; i++) await t.service.set(`k${i}`, i);
    await until(() => t!.service.stats().flushedEntries === 5, 5000, 'the first full batch to be flushed');
    // k0 is clean; written again now it is held: it neither counts toward nor rides the next full batch.
    for (let v = 1; v <= 20; v++) await t.service.set('k0', v);
    for (let i = 0; i < 5; i++) await t.service.set(`n${i}`, i);
    await until(() => t!.service.stats().flushedEntries === 10, 5000, 'the second full batch to be flushed');
    const rows = await tableRows(t.sql);
    expect(rows.get('k0')?.value).toBe(0);
    expect(rows.get('n4')?.value).toBe(4);
    expect(t.service.stats()).toMatchObject({ dirty: 1, queued: { high: 0, normal: 1, low: 0 } });
    expect(await t.service.get('k0')).toBe(20);
    // flush() does not wait for the interval: it writes the held key, once, at its latest value.
    await expect(t.service.flush()).resolves.toMatchObject({ requested: 1, committed: 1 });
    expect((await tableRows(t.sql)).get('k0')?.value).toBe(20);
    expect(t.service.stats().flushedEntries).toBe(11);
  });

  it('with coalesceHotKeys false a key written again rides the next full batch', async () => {
    t = await startWriteBack({ autoFlush: true, flushIntervalMs: 600_000, batchSize: 5, coalesceHotKeys: false });
    for (let i = 0; i < 5; i++) await t.service.set(`k${i}`, i);
    await until(() => t!.service.stats().flushedEntries === 5, 5000, 'the first full batch to be flushed');
    await t.service.set('k0', 1);
    for (let i = 0; i < 4; i++) await t.service.set(`n${i}`, i);
    await until(() => t!.service.stats().flushedEntries === 10, 5000, 'the second full batch to be flushed');
    expect((await tableRows(t.sql)).get('k0')?.value).toBe(1);
  });

  it('writeThrough resolves only after the row is committed', async () => {
    t = await startWriteBack();
    await t.service.set('wt', { v: 1 }, { writeThrough: true });
    expect((await tableRows(t.sql)).get('wt')?.value).toEqual({ v: 1 });
    expect(t.service.stats().dirty).toBe(0);
    await t.service.delete('wt', { writeThrough: true });
    expect((await tableRows(t.sql)).has('wt')).toBe(false);
  });

  it('a committed delete keeps its version: an older write arriving later (another replica) cannot revive the key', async () => {
    t = await startWriteBack();
    // singleInstance: it hears nothing of t's commits (a replica that has not yet), so its clock is not lifted.
    const stale = await startWriteBack({ schema: t.schema, runMigrations: false, singleInstance: true });
    try {
      await t.service.set('gone', { v: 1 });
      await t.service.flush();
      // The stale replica takes its version now, before the delete; its flush arrives after the delete's. Its clock
      // runs 1 s behind: versions of two instances issued within the same ~1 ms compare by instance id, not by which
      // came first (they are concurrent), so without it the order of these two writes would be up to the ids.
      const staleCache = (stale.service as unknown as { cache: { now: () => number; clock: { nowMs: () => number } } }).cache;
      staleCache.now = staleCache.clock.nowMs = () => Date.now() - 1000;
      await stale.service.set('gone', { v: 'stale' });
      await t.service.delete('gone');
      await t.service.flush();
      const { rows } = await t.sql.query('SELECT key, version::text AS version FROM write_back_tombstones');
      expect(rows.map((r) => r.key)).toEqual(['gone']);
      await stale.service.flush();
      expect((await tableRows(t.sql)).has('gone')).toBe(false);
      // The stale replica learns it lost: its copy is dropped and the next read goes to Postgres.
      expect(await stale.service.get('gone')).toBeUndefined();
      // A newer write revives the key and clears the tombstone.
      await t.service.set('gone', { v: 2 });
      await t.service.flush();
      expect((await tableRows(t.sql)).get('gone')?.value).toEqual({ v: 2 });
      expect((await t.sql.query('SELECT count(*)::int AS n FROM write_back_tombstones')).rows[0].n).toBe(0);
    } finally {
      await stale.close();
    }
  });

  it('a write the version guard skips is dropped from memory, so reads agree with the table', async () => {
    t = await startWriteBack();
    await t.service.set('newer', { from: 'cache' });
    const future = (Date.now() + 3_600_000) * 1000;
    await t.sql.query(`INSERT INTO write_back_entries VALUES ('newer', '{"from":"table"}', $1, now())`, [future]);
    await t.service.flush();
    expect(await t.service.get('newer')).toEqual({ from: 'table' });
    expect(t.service.stats().loads).toBe(1);
  });
});
