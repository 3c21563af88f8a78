import { Injectable, type Type } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import {
  Column,
  CreateDateColumn,
  DataSource,
  Entity,
  ManyToOne,
  PrimaryColumn,
  UpdateDateColumn,
  VersionColumn,
} from 'typeorm';
import { afterEach, describe, expect, it } from 'vitest';
import {
  InjectWriteBackRepository,
  WriteBackConfigError,
  WriteBackModule,
  WriteBackRepository,
  WriteBackValidationError,
  getWriteBackRepositoryToken,
} from '../../src/write-back/index.js';
import { databaseUrl, freshSchema, isPglite, NEEDS_SERVER } from '../support/database.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { tempDir } from '../support/temp-dir.js';
import { until } from '../support/wait.js';
import { copyWalDir } from '../support/wal.js';
import { startWriteBack, type WriteBackTestApp } from '../support/write-back-app.js';

enum Status {
  Active = 'active',
  Banned = 'banned',
}

/** Every common column type, nullable columns, defaults, create/update dates. */
@Entity({ name: 'wb_profiles' })
class Profile {
  @PrimaryColumn('uuid') id!: string;
  @Column('text') name!: string;
  @Column('text', { nullable: true }) bio!: string | null;
  @Column('integer', { default: 0 }) logins!: number;
  @Column('bigint', { default: 0 }) points!: string;
  @Column('numeric', { precision: 12, scale: 2, default: 0 }) balance!: string;
  @Column('boolean', { default: true }) active!: boolean;
  @Column('timestamptz', { nullable: true }) lastSeenAt!: Date | null;
  @Column('jsonb', { nullable: true }) prefs!: Record<string, unknown> | null;
  @Column({ type: 'enum', enum: Status, enumName: 'wb_status', default: Status.Active }) status!: Status;
  @Column('text', { array: true, default: '{}' }) tags!: string[];
  @Column('integer', { array: true, nullable: true }) scores!: number[] | null;
  @CreateDateColumn({ type: 'timestamptz' }) createdAt!: Date;
  @UpdateDateColumn({ type: 'timestamptz' }) updatedAt!: Date;
}

/** A composite primary key. */
@Entity({ name: 'wb_memberships' })
class Membership {
  @PrimaryColumn('integer') teamId!: number;
  @PrimaryColumn('text') userName!: string;
  @Column('text') role!: string;
  @Column('integer', { default: 0 }) visits!: number;
}

/** A bigint key, a guard column for the module's versions, and TypeORM's @VersionColumn (a write counter). */
@Entity({ name: 'wb_docs' })
class Doc {
  @PrimaryColumn('bigint') id!: string;
  @Column('text') body!: string;
  @Column('integer', { default: 0 }) edits!: number;
  @Column('bigint', { default: 0 }) writeVersion!: string;
  @VersionColumn() version!: number;
}

const ENTITIES = [Profile, Membership, Doc];
const FEATURES = [Profile, Membership, { entity: Doc, versionColumn: 'writeVersion' }];
const ADA = '6f1c7c1e-5b7e-4d0a-9b43-2a3c1d9e8f01';
const BOB = '0b5f3f0e-8e8f-4d7b-8c55-7d8a9f1e2c02';

@Injectable()
class ProfileService {
  constructor(@InjectWriteBackRepository(Profile) readonly profiles: WriteBackRepository<Profile>) {}
}

interface EntityApp extends WriteBackTestApp {
  profiles: WriteBackRepository<Profile>;
  memberships: WriteBackRepository<Membership>;
  docs: WriteBackRepository<Doc>;
}

/** Creates the app's tables the way an app's own TypeORM would (schema sync on its own DataSource). */
async function createTables(schema: string): Promise<void> {
  const setup = new DataSource({ type: 'postgres', url: databaseUrl(), schema, entities: ENTITIES, synchronize: false });
  await setup.initialize();
  try {
    await setup.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await setup.synchronize();
  } finally {
    await setup.destroy();
  }
}

describe('WriteBackModule.forFeature: write-behind into the app\'s own entity tables', () => {
  const open: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    while (open.length > 0) await open.pop()!.close();
  });

  const start = async (options: Parameters<typeof startWriteBack>[0] = {}, tables = true): Promise<EntityApp> => {
    const schema = options.schema ?? freshSchema();
    if (tables) await createTables(schema);
    const t = await startWriteBack(
      { entities: ENTITIES, ...options, schema },
      { imports: [WriteBackModule.forFeature(FEATURES)] },
    );
    open.push(t);
    return {
      ...t,
      profiles: t.app.get(getWriteBackRepositoryToken(Profile)),
      memberships: t.app.get(getWriteBackRepositoryToken(Membership)),
      docs: t.app.get(getWriteBackRepositoryToken(Doc)),
    };
  };
  const profileRow = async (t: WriteBackTestApp, id: string) =>
    (await t.sql.query(`SELECT *, points::text AS points, balance::text AS balance FROM wb_profiles WHERE id = $1`, [id])).rows[0];

  it('saves whole rows of every common column type, reads them before and after the flush with TypeORM types', async () => {
    const t = await start();
    const seen = new Date('2026-11-30T12:34:56.789Z');
    await t.profiles.save({
      id: ADA,
      name: 'Ada',
      bio: null,
      logins: 3,
      points: '9007199254740993',
      balance: '12.50',
      active: false,
      lastSeenAt: seen,
      prefs: { theme: 'dark', nested: { a: [1, 2] } },
      status: Status.Banned,
      tags: ['x', 'y,z'],
      scores: [1, 2, 3],
    });
    const pending = await t.profiles.findOneBy(ADA);
    expect(pending).toBeInstanceOf(Profile);
    expect(pending!.lastSeenAt).toEqual(seen);
    expect(pending!.points).toBe('9007199254740993');
    expect(await t.sql.query('SELECT 1 FROM wb_profiles')).toMatchObject({ rowCount: 0 });

    expect(await t.service.flush()).toMatchObject({ requested: 1, committed: 1, deadLettered: 0 });
    const row = await profileRow(t, ADA);
    expect(row).toMatchObject({
      name: 'Ada',
      bio: null,
      logins: 3,
      points: '9007199254740993',
      balance: '12.50',
      active: false,
      prefs: { theme: 'dark', nested: { a: [1, 2] } },
      status: 'banned',
      tags: ['x', 'y,z'],
      scores: [1, 2, 3],
    });
    expect(row.lastSeenAt).toEqual(seen);
    expect(row.createdAt).toBeInstanceOf(Date);

    // A second instance reads it from the table: same types as TypeORM's own repository returns.
    const typeorm = await t.service.dataSource.getRepository(Profile).findOneByOrFail({ id: ADA });
    const loaded = await t.profiles.findOneBy(ADA);
    expect(loaded).toEqual(typeorm);
    expect(loaded!.updatedAt).toBeInstanceOf(Date);
  });

  it('update() sets only the named columns: columns changed by plain SQL meanwhile survive; updates coalesce per row', async () => {
    const t = await start();
    await t.sql.query(`INSERT INTO wb_profiles (id, name, bio, logins) VALUES ($1, 'Ada', 'old', 1), ($2, 'Bob', NULL, 0)`, [ADA, BOB]);
    const before = t.service.stats();
    for (let i = 0; i < 50; i++) await t.profiles.update(ADA, { lastSeenAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)) });
    await t.profiles.update(ADA, { prefs: { a: 1 } });
    await t.profiles.update(ADA, { prefs: { b: 2 }, bio: null });
    // Meanwhile another writer changes columns this instance never named.
    await t.sql.query(`UPDATE wb_profiles SET name = 'Ada Lovelace', logins = 42 WHERE id = $1`, [ADA]);
    const pending = await t.profiles.findOneBy(ADA);
    expect(pending).toMatchObject({ prefs: { b: 2 }, bio: null, lastSeenAt: new Date(Date.UTC(2026, 0, 1, 0, 0, 49)) });
    await t.service.flush();
    expect(t.service.stats().flushedEntries - before.flushedEntries).toBe(1);
    const row = await profileRow(t, ADA);
    // A jsonb column value is replaced whole (no merge), null is SQL NULL.
    expect(row).toMatchObject({ name: 'Ada Lovelace', logins: 42, bio: null, prefs: { b: 2 } });
    expect(row.lastSeenAt).toEqual(new Date(Date.UTC(2026, 0, 1, 0, 0, 49)));
    expect((await profileRow(t, BOB)).bio).toBeNull();
    // An update of an absent row does nothing (SQL UPDATE), and reads as absent.
    const ghost = '11111111-2222-4333-8444-555555555555';
    await t.profiles.update(ghost, { name: 'nobody' });
    expect(await t.profiles.findOneBy(ghost)).toBeNull();
    await t.service.flush();
    expect((await t.sql.query('SELECT count(*)::int AS n FROM wb_profiles')).rows[0].n).toBe(2);
  });

  it('save() of an existing row keeps the columns the entity leaves undefined; a new row gets defaults', async () => {
    const t = await start();
    await t.sql.query(`INSERT INTO wb_profiles (id, name, bio, logins) VALUES ($1, 'Ada', 'kept', 7)`, [ADA]);
    await t.profiles.save({ id: ADA, name: 'Ada L.' });
    await t.profiles.save({ id: BOB, name: 'Bob' });
    await t.service.flush();
    expect(await profileRow(t, ADA)).toMatchObject({ name: 'Ada L.', bio: 'kept', logins: 7 });
    expect(await profileRow(t, BOB)).toMatchObject({ name: 'Bob', bio: null, logins: 0, points: '0', active: true, status: 'active', tags: [] });
  });

  it('an increment of a column a pending save left out writes the save first, then adds to what the row holds', async () => {
    const t = await start();
    await t.sql.query(`INSERT INTO wb_profiles (id, name, logins) VALUES ($1, 'Ada', 42)`, [ADA]);
    await t.profiles.save({ id: ADA, name: 'Ada L.' });
    await t.profiles.increment(ADA, 'logins', 1);
    await t.profiles.save({ id: BOB, name: 'Bob', logins: 5 });
    await t.profiles.increment(BOB, 'logins', 2);
    expect(await t.profiles.findOneBy(ADA)).toMatchObject({ name: 'Ada L.', logins: 43 });
    expect(await t.profiles.findOneBy(BOB)).toMatchObject({ logins: 7 });
    await t.service.flush();
    expect(await profileRow(t, ADA)).toMatchObject({ name: 'Ada L.', logins: 43 });
    expect(await profileRow(t, BOB)).toMatchObject({ name: 'Bob', logins: 7 });
  });

  it('increments and decrements add to whatever the row holds, exactly, with composite keys and bigint/numeric columns', async () => {
    const t = await start();
    await t.sql.query(`INSERT INTO wb_memberships ("teamId", "userName", role, visits) VALUES (1, 'ada', 'admin', 10), (1, 'bob', 'member', 0)`);
    await t.sql.query(`INSERT INTO wb_profiles (id, name, points, balance) VALUES ($1, 'Ada', 9007199254740990, 1.25)`, [ADA]);
    for (let i = 0; i < 100; i++) await t.memberships.increment({ teamId: 1, userName: 'ada' }, 'visits', 2);
    await t.memberships.decrement({ teamId: 1, userName: 'bob' }, 'visits');
    await t.memberships.update({ teamId: 1, userName: 'bob' }, { role: 'owner' });
    for (let i = 0; i < 5; i++) await t.profiles.increment(ADA, 'points', 1);
    await t.profiles.increment(ADA, 'balance', 3);
    expect(await t.memberships.findOneBy({ teamId: 1, userName: 'ada' })).toMatchObject({ visits: 210, role: 'admin' });
    expect(await t.profiles.findOneBy(ADA)).toMatchObject({ points: '9007199254740995', balance: '4.25' });
    // Another writer changes the counter meanwhile: the increments add to it.
    await t.sql.query(`UPDATE wb_memberships SET visits = 1000 WHERE "userName" = 'ada'`);
    await t.service.flush();
    const rows = (await t.sql.query(`SELECT "userName", role, visits FROM wb_memberships ORDER BY "userName"`)).rows;
    expect(rows).toEqual([
      { userName: 'ada', role: 'admin', visits: 1200 },
      { userName: 'bob', role: 'owner', visits: -1 },
    ]);
    expect(await profileRow(t, ADA)).toMatchObject({ points: '9007199254740995', balance: '4.25' });
    await expect(t.profiles.increment(ADA, 'name' as never, 1)).rejects.toBeInstanceOf(WriteBackValidationError);
    await expect(t.profiles.increment(ADA, 'logins', 0.5)).rejects.toThrow(/integer/);
  });

  it('delete() reads as absent at once, removes the row at the flush; a later save brings it back', async () => {
    const t = await start();
    await t.sql.query(`INSERT INTO wb_memberships ("teamId", "userName", role) VALUES (2, 'ada', 'admin'), (2, 'bob', 'member')`);
    await t.memberships.delete({ teamId: 2, userName: 'ada' });
    await t.memberships.update({ teamId: 2, userName: 'ada' }, { role: 'ghost' });
    expect(await t.memberships.findOneBy({ teamId: 2, userName: 'ada' })).toBeNull();
    await t.service.flush();
    expect((await t.sql.query(`SELECT "userName" FROM wb_memberships WHERE "teamId" = 2`)).rows).toEqual([{ userName: 'bob' }]);
    await t.memberships.save({ teamId: 2, userName: 'ada', role: 'back' });
    await t.service.flush();
    expect(await t.memberships.findOneBy({ teamId: 2, userName: 'ada' })).toMatchObject({ role: 'back', visits: 0 });
  });

  it('normalizes primary keys, so 1 and "1" of a bigint key are one row (one statement row)', async () => {
    const t = await start();
    await t.docs.save({ id: '1', body: 'a' });
    await t.docs.update(1 as unknown as string, { body: 'b' });
    await t.docs.increment(1n as unknown as string, 'edits', 1);
    expect(t.service.stats().dirty).toBe(1);
    await t.service.flush();
    expect((await t.sql.query('SELECT id::text, body, edits FROM wb_docs')).rows).toEqual([{ id: '1', body: 'b', edits: 1 }]);
    await expect(t.docs.save({ body: 'no key' })).rejects.toThrow(/primary key column "id" is missing/);
  });

  it('guards by the versionColumn: an older save or column value is skipped, increments still apply once; @VersionColumn counts writes', async () => {
    const t = await start();
    await t.docs.save({ id: '7', body: 'first', edits: 0 });
    await t.service.flush();
    const first = (await t.sql.query(`SELECT "writeVersion"::text AS v, version FROM wb_docs WHERE id = 7`)).rows[0];
    expect(BigInt(first.v)).toBeGreaterThan(1_000_000_000_000_000n);
    expect(first.version).toBe(1);
    // Another replica committed a newer version of the row meanwhile.
    await t.sql.query(`UPDATE wb_docs SET body = 'newer', "writeVersion" = "writeVersion" + 1000000000000 WHERE id = 7`);
    await t.docs.save({ id: '7', body: 'stale' });
    await t.service.flush();
    expect((await t.sql.query(`SELECT body, version FROM wb_docs WHERE id = 7`)).rows[0]).toEqual({ body: 'newer', version: 1 });
    await t.docs.update('7', { body: 'stale too' });
    await t.docs.increment('7', 'edits', 5);
    await t.service.flush();
    expect((await t.sql.query(`SELECT body, edits, version FROM wb_docs WHERE id = 7`)).rows[0]).toEqual({ body: 'newer', edits: 5, version: 2 });
    // Without the newer row in the way, updates apply.
    await t.docs.save({ id: '8', body: 'a' });
    await t.service.flush();
    await t.docs.update('8', { body: 'b' });
    await t.service.flush();
    expect((await t.sql.query(`SELECT body, version FROM wb_docs WHERE id = 8`)).rows[0]).toEqual({ body: 'b', version: 2 });
  });

  it('many rows setting the same columns in one batch (one plain UPDATE) keep every rule: types, guard, counter, untouched columns', async () => {
    const t = await start({ batchSize: 1000 });
    const ids = Array.from({ length: 40 }, (_, i) => String(100 + i));
    for (const id of ids) await t.docs.save({ id, body: 'first', edits: 1 });
    const profiles = Array.from({ length: 24 }, (_, i) => `6f1c7c1e-5b7e-4d0a-9b43-${String(i).padStart(12, '0')}`);
    for (const id of profiles) await t.profiles.save({ id, name: `p${id.slice(-2)}` });
    for (let i = 0; i < 20; i++) await t.memberships.save({ teamId: i, userName: 'ada', role: 'member' });
    await t.service.flush();
    // Another replica wrote a newer version of half the docs; plain SQL changed a column nobody names below.
    await t.sql.query(`UPDATE wb_docs SET body = 'newer', "writeVersion" = "writeVersion" + 1000000000000 WHERE id < 120`);
    await t.sql.query(`UPDATE wb_profiles SET logins = 7`);
    for (const id of ids) await t.docs.update(id, { body: 'second' });
    const seen = new Date(Date.UTC(2026, 5, 1));
    for (const id of profiles) {
      await t.profiles.update(id, { lastSeenAt: seen, tags: ['a', 'b'], prefs: { theme: 'dark' }, status: Status.Banned, balance: '12.50' });
    }
    for (let i = 0; i < 20; i++) await t.memberships.update({ teamId: i, userName: 'ada' }, { role: 'owner' });
    await t.service.flush();
    const docs = (await t.sql.query(`SELECT id::int AS id, body, edits, version FROM wb_docs WHERE id >= 100 ORDER BY id`)).rows;
    expect(docs).toEqual(ids.map((id) => ({ id: Number(id), body: Number(id) < 120 ? 'newer' : 'second', edits: 1, version: 2 })));
    const rows = (await t.sql.query(`SELECT *, balance::text AS balance FROM wb_profiles WHERE id = ANY($1) ORDER BY id`, [profiles])).rows;
    expect(rows).toHaveLength(24);
    for (const row of rows) {
      expect(row).toMatchObject({ logins: 7, tags: ['a', 'b'], prefs: { theme: 'dark' }, status: 'banned', balance: '12.50', lastSeenAt: seen });
      expect(row.updatedAt.getTime()).toBeGreaterThan(row.createdAt.getTime());
    }
    const roles = (await t.sql.query(`SELECT DISTINCT role FROM wb_memberships WHERE "userName" = 'ada'`)).rows;
    expect(roles).toEqual([{ role: 'owner' }]);
    // Updates of rows that do not exist create nothing.
    for (let i = 0; i < 20; i++) await t.docs.update(String(900 + i), { body: 'ghost' });
    await t.service.flush();
    expect((await t.sql.query(`SELECT count(*)::int AS n FROM wb_docs WHERE id >= 900`)).rows[0].n).toBe(0);
  });

  it('dead-letters a row Postgres rejects, naming entity and primary key; the rest commits; replay writes it once fixed', async () => {
    const t = await start({ maxRetries: 1 });
    await t.sql.query(`ALTER TABLE wb_memberships ADD CONSTRAINT role_known CHECK (role <> 'bad')`);
    await t.memberships.save({ teamId: 3, userName: 'ada', role: 'bad' });
    await t.memberships.save({ teamId: 3, userName: 'bob', role: 'ok' });
    await t.memberships.increment({ teamId: 3, userName: 'bob' }, 'visits', 1);
    const report = await t.service.flush();
    expect(report).toMatchObject({ deadLettered: 1 });
    await t.service.flush();
    const [letter] = await t.service.listDeadLetters();
    expect(letter).toMatchObject({ entity: 'Membership', key: 'Membership:[3,"ada"]', operation: 'upsert', errorCode: '23514' });
    expect(letter.value).toMatchObject({ teamId: 3, userName: 'ada', role: 'bad' });
    expect((await t.sql.query(`SELECT "userName", visits FROM wb_memberships`)).rows).toEqual([{ userName: 'bob', visits: 1 }]);
    expect(await t.memberships.findOneBy({ teamId: 3, userName: 'ada' })).toBeNull();
    await t.sql.query(`ALTER TABLE wb_memberships DROP CONSTRAINT role_known`);
    expect(await t.service.replayDeadLetter(letter.id)).toEqual({ requeued: true, outcome: 'committed' });
    expect((await t.sql.query(`SELECT role FROM wb_memberships WHERE "userName" = 'ada'`)).rows).toEqual([{ role: 'bad' }]);
    expect(await t.service.countDeadLetters()).toBe(0);
  });

  it('dead-letters a row delta and replays it exactly once', async () => {
    const t = await start({ maxRetries: 1 });
    await t.sql.query(`INSERT INTO wb_memberships ("teamId", "userName", role, visits) VALUES (4, 'ada', 'a', 2147483000)`);
    await t.memberships.increment({ teamId: 4, userName: 'ada' }, 'visits', 1000);
    expect(await t.service.flush()).toMatchObject({ deadLettered: 1 });
    const [letter] = await t.service.listDeadLetters();
    expect(letter).toMatchObject({ entity: 'Membership', operation: 'delta', errorCode: '22003' });
    await t.sql.query(`UPDATE wb_memberships SET visits = 0`);
    await t.service.replayDeadLetter(letter.id);
    expect((await t.sql.query(`SELECT visits FROM wb_memberships`)).rows[0].visits).toBe(1000);
    expect(await t.memberships.findOneBy({ teamId: 4, userName: 'ada' })).toMatchObject({ visits: 1000 });
  });

  it.skipIf(isPglite())(`applies row increments once when the connection dies right after the commit (${NEEDS_SERVER})`, async () => {
    const schema = freshSchema();
    const proxy = await TcpProxy.start(databaseUrl());
    open.push(proxy);
    const t = await start({ url: proxy.url, schema, poolSize: 2, flushConcurrency: 1, retryBaseDelayMs: 1, retryMaxDelayMs: 5 });
    await t.sql.query(`INSERT INTO wb_memberships ("teamId", "userName", role) SELECT 5, 'u' || i, 'm' FROM generate_series(0, 4) i`);
    // The statement is prepared once up front (catalog lookup), so the cut below hits the batch itself.
    await t.memberships.update({ teamId: 5, userName: 'u0' }, { role: 'm' });
    await t.service.flush();
    for (let i = 0; i < 50; i++) await t.memberships.increment({ teamId: 5, userName: `u${i % 5}` }, 'visits', 1);
    proxy.setLatency(300);
    const flushed = t.service.flush();
    await until(
      async () => (await t.sql.query(`SELECT count(*)::int AS n FROM write_back_delta_ledger WHERE key LIKE 'Membership:%'`)).rows[0].n === 5 &&
        (await t.sql.query(`SELECT sum(visits)::int AS n FROM wb_memberships`)).rows[0].n === 50,
      10_000,
      'the commit',
    );
    expect(proxy.cut()).toBeGreaterThan(0);
    proxy.setLatency(0);
    await flushed;
    expect(t.service.stats().retries).toBeGreaterThanOrEqual(1);
    expect((await t.sql.query(`SELECT visits FROM wb_memberships ORDER BY "userName"`)).rows.map((r) => r.visits)).toEqual([10, 10, 10, 10, 10]);
  });

  it('replays entity rows from the WAL after a crash: saves and updates once more, increments exactly once', async () => {
    const schema = freshSchema();
    const walDir = await tempDir('write-back-entity-wal-');
    const a = await start({ schema, durability: 'wal-sync', walDir });
    await a.sql.query(`INSERT INTO wb_memberships ("teamId", "userName", role, visits) VALUES (6, 'ada', 'a', 1)`);
    await a.memberships.save({ teamId: 6, userName: 'bob', role: 'new', visits: 2 });
    await a.memberships.increment({ teamId: 6, userName: 'ada' }, 'visits', 5);
    await a.memberships.update({ teamId: 6, userName: 'ada' }, { role: 'b' });
    await a.memberships.delete({ teamId: 6, userName: 'gone' });
    // The disk as a kill -9 would leave it: every write acknowledged (fsynced), nothing flushed yet.
    const image = await copyWalDir(walDir);
    await a.service.flush();
    const rows = async (t: WriteBackTestApp) =>
      (await t.sql.query(`SELECT "userName", role, visits FROM wb_memberships WHERE "teamId" = 6 ORDER BY "userName"`)).rows;
    const expected = [
      { userName: 'ada', role: 'b', visits: 6 },
      { userName: 'bob', role: 'new', visits: 2 },
    ];
    expect(await rows(a)).toEqual(expected);
    await a.close();
    // Restarted on that image after the flush had committed (the crash came before the log was trimmed).
    const b = await start({ schema, durability: 'wal-sync', walDir: image }, false);
    expect(b.service.stats().dirty).toBe(3);
    await b.service.flush();
    expect(await rows(b)).toEqual(expected);
  });

  it('two instances on one table: increments add up exactly, updates of different columns both survive', async () => {
    const schema = freshSchema();
    const a = await start({ schema });
    const b = await start({ schema }, false);
    await a.sql.query(`INSERT INTO wb_profiles (id, name) VALUES ($1, 'Ada')`, [ADA]);
    await Promise.all(
      [a, b].flatMap((t) =>
        Array.from({ length: 8 }, async (_, writer) => {
          for (let n = 0; n < 500; n++) {
            await t.profiles.increment(ADA, 'logins', 1);
            if (n % 100 === 0 && writer === 0) void t.service.flush();
          }
        }),
      ),
    );
    await a.profiles.update(ADA, { bio: 'from a' });
    await b.profiles.update(ADA, { tags: ['from b'] });
    await a.service.flush();
    await b.service.flush();
    expect(await profileRow(a, ADA)).toMatchObject({ logins: 8000, bio: 'from a', tags: ['from b'], name: 'Ada' });
  });

  // Invalidation travels by LISTEN/NOTIFY between connections, which embedded PGlite does not deliver (as in replicas.e2e).
  it.skipIf(isPglite())(`another instance reads a committed change of an entity row soon after (invalidation covers entity rows) (${NEEDS_SERVER})`, async () => {
    const schema = freshSchema();
    const a = await start({ schema });
    const b = await start({ schema }, false);
    await a.sql.query(`INSERT INTO wb_profiles (id, name) VALUES ($1, 'Ada')`, [ADA]);
    expect(await b.profiles.findOneBy(ADA)).toMatchObject({ name: 'Ada' }); // b now holds a clean copy
    await a.profiles.update(ADA, { name: 'Ada L.' });
    await a.profiles.increment(ADA, 'logins', 2);
    await a.service.flush();
    await until(async () => (await b.profiles.findOneBy(ADA))?.name === 'Ada L.', 10_000, 'b reads the new name');
    expect(await b.profiles.findOneBy(ADA)).toMatchObject({ name: 'Ada L.', logins: 2 });
  });

  it('injects the repository with @InjectWriteBackRepository and refuses entities it cannot write behind, naming the fix', async () => {
    const schema = freshSchema();
    await createTables(schema);
    const module = await Test.createTestingModule({
      imports: [
        WriteBackModule.forRoot({ url: databaseUrl(), schema, autoFlush: false, entities: ENTITIES }),
        WriteBackModule.forFeature([Profile]),
      ],
      providers: [ProfileService],
    }).compile();
    const app = module.createNestApplication({ logger: false });
    await app.init();
    open.push(app);
    expect(app.get(ProfileService).profiles).toBeInstanceOf(WriteBackRepository);

    @Entity({ name: 'wb_authors' })
    class Author {
      @PrimaryColumn('integer') id!: number;
    }
    @Entity({ name: 'wb_posts' })
    class Post {
      @PrimaryColumn('integer') id!: number;
      @ManyToOne(() => Author) author!: Author;
    }
    @Entity({ name: 'wb_int_versions' })
    class IntVersion {
      @PrimaryColumn('integer') id!: number;
      @Column('integer') stamp!: number;
    }
    @Entity({ name: 'wb_simple' })
    class Simple {
      @PrimaryColumn('integer') id!: number;
      @Column('simple-json') data!: unknown;
    }
    @Entity({ name: 'wb_keyless' })
    class NotListed {
      @PrimaryColumn('integer') id!: number;
    }
    const boot = async (entity: Type, listed: Type[], versionColumn?: string) => {
      const m = await Test.createTestingModule({
        imports: [
          WriteBackModule.forRoot({ url: databaseUrl(), schema: freshSchema(), autoFlush: false, entities: listed }),
          WriteBackModule.forFeature([versionColumn ? { entity, versionColumn } : entity]),
        ],
      }).compile();
      const failing = m.createNestApplication({ logger: false });
      try {
        await failing.init();
      } finally {
        await failing.close().catch(() => undefined);
      }
    };
    await expect(boot(Post, [Post, Author])).rejects.toThrow(/entity Post has relations \(author\).*not written behind.*plain @Column/);
    await expect(boot(IntVersion, [IntVersion], 'stamp')).rejects.toThrow(/versionColumn "stamp" must name a bigint column/);
    await expect(boot(Simple, [Simple])).rejects.toThrow(/column "data" of type "simple-json"/);
    await expect(boot(NotListed, [])).rejects.toThrow(/entity NotListed is not in the DataSource.*forRoot\({ entities/);
    await expect(boot(NotListed, [])).rejects.toBeInstanceOf(WriteBackConfigError);
  });
});
