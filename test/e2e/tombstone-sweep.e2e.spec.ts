import { afterEach, describe, expect, it } from 'vitest';
import { TOMBSTONE_SWEEP_BATCH } from '../../src/write-back/store/tombstone-sweeper.js';
import { connectSql, isPglite, NEEDS_SERVER, tableRows } from '../support/database.js';
import { until } from '../support/wait.js';
import { startWriteBack, type WriteBackTestApp } from '../support/write-back-app.js';

const tombstoneKeys = async (t: WriteBackTestApp): Promise<string[]> =>
  (await t.sql.query('SELECT key FROM write_back_tombstones ORDER BY key')).rows.map((r) => r.key as string);

/** Makes the tombstones of `keys` look `age` old (Postgres interval), as if deleted that long ago. */
const backdate = (t: WriteBackTestApp, keys: string[], age: string) =>
  t.sql.query(`UPDATE write_back_tombstones SET deleted_at = now() - $2::interval WHERE key = ANY($1)`, [keys, age]);

describe('tombstone sweeping (tombstoneRetentionMs)', () => {
  let t: WriteBackTestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('sweeps tombstones older than the retention, keeps newer ones, and keeps one a dead letter older than the delete needs', async () => {
    t = await startWriteBack({ maxRetries: 1, tombstoneRetentionMs: 60_000 });
    await t.sql.query(`ALTER TABLE write_back_entries ADD CONSTRAINT no_poison CHECK ((value->>'bad') IS DISTINCT FROM 'yes')`);
    await t.service.set('held', { bad: 'yes' });
    await t.service.set('old', 1);
    await t.service.set('recent', 2);
    await t.service.flush();
    const [letter] = await t.service.listDeadLetters();
    expect(letter).toMatchObject({ key: 'held' });
    for (const key of ['held', 'old', 'recent']) await t.service.delete(key);
    await t.service.flush();
    expect(await tombstoneKeys(t)).toEqual(['held', 'old', 'recent']);

    await backdate(t, ['held', 'old'], '2 minutes');
    expect(await t.service.sweepTombstones()).toBe(1);
    expect(await tombstoneKeys(t)).toEqual(['held', 'recent']);

    // The dead letter predates the delete: its replay is still refused, however old the tombstone is.
    await t.sql.query('ALTER TABLE write_back_entries DROP CONSTRAINT no_poison');
    expect(await t.service.replayDeadLetter(letter.id)).toEqual({ requeued: false, outcome: 'superseded' });
    expect((await tableRows(t.sql)).has('held')).toBe(false);
    // Once the dead letter is gone the tombstone is only as old as any other and goes in the next sweep.
    expect(await t.service.sweepTombstones()).toBe(1);
    expect(await tombstoneKeys(t)).toEqual(['recent']);
  });

  it(`deletes in transactions of ${TOMBSTONE_SWEEP_BATCH} rows until none is left`, async () => {
    t = await startWriteBack({ tombstoneRetentionMs: 60_000 });
    const count = 2 * TOMBSTONE_SWEEP_BATCH + 201;
    await t.sql.query(
      `INSERT INTO write_back_tombstones (key, version, deleted_at)
       SELECT 'k' || i, i, now() - interval '1 hour' FROM generate_series(1, $1::int) AS i`,
      [count],
    );
    expect(await t.service.sweepTombstones()).toBe(count);
    expect(await tombstoneKeys(t)).toEqual([]);
  });

  it.skipIf(isPglite())(`one replica sweeps: while another session holds the sweep lock, a sweep deletes nothing (${NEEDS_SERVER})`, async () => {
    t = await startWriteBack({ tombstoneRetentionMs: 60_000 });
    await t.service.set('gone', 1);
    await t.service.flush();
    await t.service.delete('gone');
    await t.service.flush();
    await backdate(t, ['gone'], '1 hour');
    const other = await connectSql(t.schema);
    try {
      await other.query('SELECT pg_advisory_lock(hashtext($1))', [`nestjs-write-back:tombstone-sweep:${t.schema}`]);
      expect(await t.service.sweepTombstones()).toBe(0);
      expect(await tombstoneKeys(t)).toEqual(['gone']);
      await other.query('SELECT pg_advisory_unlock_all()');
    } finally {
      await other.end();
    }
    expect(await t.service.sweepTombstones()).toBe(1);
  });

  it('sweeps in the background every tombstoneSweepIntervalMs while autoFlush runs; retention 0 never sweeps', async () => {
    t = await startWriteBack({ autoFlush: true, tombstoneRetentionMs: 60_000, tombstoneSweepIntervalMs: 1000 });
    await t.sql.query(`INSERT INTO write_back_tombstones (key, version, deleted_at) VALUES ('bg', 1, now() - interval '1 hour'), ('new', 2, now())`);
    await until(async () => !(await tombstoneKeys(t!)).includes('bg'), 10_000, 'the background sweep');
    expect(await tombstoneKeys(t)).toEqual(['new']);
    await t.close();

    t = await startWriteBack({ tombstoneRetentionMs: 0 });
    await t.sql.query(`INSERT INTO write_back_tombstones (key, version, deleted_at) VALUES ('kept', 1, now() - interval '100 years')`);
    expect(await t.service.sweepTombstones()).toBe(0);
    expect(await tombstoneKeys(t)).toEqual(['kept']);
  });
});
