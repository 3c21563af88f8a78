// Scenario: entities. `repository.update(id, { lastSeenAt })` of WriteBackModule.forFeature on 100k rows of the
// app's own table, against, in the same process: (a) TypeORM's own `repository.update` per call on a pool of 16, and
// (b) the raw batched statement of the same rows (one jsonb parameter per 1,000 rows, 2 connections, like the
// flusher). The cache figure is end to end: every call made and then flush() committed. Each run checks the rows.
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { DataSource, EntitySchema } from 'typeorm';
import { check, log, performance, round, yieldLoop } from '../lib/util.mjs';
import { pg } from '../lib/db.mjs';
import { BenchLogger, distUrl, freshSchema, serviceOverrides } from '../lib/service.mjs';

const { WriteBackModule, getWriteBackRepositoryToken } = await import(distUrl('write-back/index.js'));

const CALLERS = 64;
const BATCH = 1000;

const User = new EntitySchema({
  name: 'BenchUser',
  tableName: 'users',
  columns: {
    id: { type: 'integer', primary: true },
    name: { type: 'text' },
    logins: { type: 'integer', default: 0 },
    lastSeenAt: { type: 'timestamptz', nullable: true, name: 'last_seen_at' },
  },
});

async function createUsers(url, schema, rows) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(`CREATE SCHEMA "${schema}"`);
  await client.query(`CREATE TABLE "${schema}".users (id integer PRIMARY KEY, name text NOT NULL, logins integer NOT NULL DEFAULT 0, last_seen_at timestamptz)`);
  await client.query(`INSERT INTO "${schema}".users (id, name) SELECT i, 'user ' || i FROM generate_series(0, $1 - 1) i`, [rows]);
  await client.query(`VACUUM ANALYZE "${schema}".users`);
  return client;
}

/** Rows whose last_seen_at is `at` (every one of them must be, after a run). */
async function countStamped(client, schema, at) {
  return Number((await client.query(`SELECT count(*) AS n FROM "${schema}".users WHERE last_seen_at = $1`, [at])).rows[0].n);
}

/** `callers` loops taking ids 0..rows-1 once each; `op(id)` per id. Returns seconds. */
async function each(rows, callers, op) {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      let sinceYield = 0;
      for (let id = next++; id < rows; id = next++) {
        await op(id);
        // Calls that resolve in memory must still let the flusher's timers and I/O run.
        if (++sinceYield === 256) {
          sinceYield = 0;
          await yieldLoop();
        }
      }
    }),
  );
  return (performance.now() - t0) / 1000;
}

async function cacheRun(url, rows) {
  const schema = freshSchema('ent_cache');
  const client = await createUsers(url, schema, rows);
  const logger = new BenchLogger();
  const app = await NestFactory.createApplicationContext(
    {
      module: class BenchEntitiesModule {},
      imports: [
        WriteBackModule.forRoot({ url, schema, entities: [User], shutdownTimeoutMs: 2000, maxDirtyEntries: 1_000_000, maxEntries: 1_000_000, ...serviceOverrides }),
        WriteBackModule.forFeature([User]),
      ],
    },
    { logger, abortOnError: false },
  );
  await app.init();
  try {
    const users = app.get(getWriteBackRepositoryToken(User));
    const service = users.service ?? app.get((await import(distUrl('write-back/index.js'))).WriteBackService);
    // Warm-up: the statement is built from the catalog at the first flush.
    await users.update(0, { lastSeenAt: new Date(0) });
    await service.flush();
    const at = new Date('2026-01-01T00:00:00.000Z');
    const t0 = performance.now();
    const callSeconds = await each(rows, CALLERS, (id) => users.update(id, { lastSeenAt: at }));
    const flushStart = performance.now();
    const dirtyAtFlush = service.stats().dirty;
    await service.flush();
    const flushSeconds = (performance.now() - flushStart) / 1000;
    const seconds = (performance.now() - t0) / 1000;
    const stamped = await countStamped(client, schema, at);
    return {
      rowsPerSec: Math.round(rows / seconds),
      callsPerSec: Math.round(rows / callSeconds),
      // What was still dirty once the calls returned, over the time flush() took to commit it.
      flushRowsPerSec: Math.round(dirtyAtFlush / flushSeconds),
      seconds: round(seconds, 2),
      exact: stamped === rows,
      flushes: service.stats().flushes,
      errors: logger.errors,
    };
  } finally {
    await app.close();
    await client.query(`DROP SCHEMA "${schema}" CASCADE`);
    await client.end();
  }
}

async function typeormRun(url, rows, ms) {
  const schema = freshSchema('ent_typeorm');
  const client = await createUsers(url, schema, rows);
  const dataSource = await new DataSource({ type: 'postgres', url, schema, entities: [User], poolSize: 16 }).initialize();
  try {
    const repository = dataSource.getRepository(User);
    const at = new Date('2026-01-01T00:00:00.000Z');
    let stop = false;
    setTimeout(() => (stop = true), ms);
    let count = 0;
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CALLERS }, async () => {
        while (!stop) {
          await repository.update(next++ % rows, { lastSeenAt: at });
          count++;
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const stamped = await countStamped(client, schema, at);
    return { opsPerSec: Math.round(count / seconds), count, exact: stamped === Math.min(count, rows) };
  } finally {
    await dataSource.destroy();
    await client.query(`DROP SCHEMA "${schema}" CASCADE`);
    await client.end();
  }
}

async function rawRun(url, rows) {
  const schema = freshSchema('ent_raw');
  const client = await createUsers(url, schema, rows);
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  try {
    const sql = `UPDATE "${schema}".users AS u SET last_seen_at = r.t FROM jsonb_to_recordset($1::jsonb) AS r(id integer, t timestamptz) WHERE u.id = r.id`;
    await pool.query(sql, ['[{"id":0,"t":"1970-01-01T00:00:00Z"}]']);
    const at = new Date('2026-01-01T00:00:00.000Z');
    const stamp = JSON.stringify(at);
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      [0, 1].map(async () => {
        for (let start = next; start < rows; start = next) {
          next += BATCH;
          let document = '[';
          for (let id = start; id < Math.min(rows, start + BATCH); id++) document += `${id > start ? ',' : ''}{"id":${id},"t":${stamp}}`;
          await pool.query(sql, [`${document}]`]);
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    return { rowsPerSec: Math.round(rows / seconds), exact: (await countStamped(client, schema, at)) === rows };
  } finally {
    await pool.end();
    await client.query(`DROP SCHEMA "${schema}" CASCADE`);
    await client.end();
  }
}

export async function run(ctx) {
  const { quick, url } = ctx;
  const rows = quick ? 20_000 : 100_000;
  const passes = quick ? 1 : 3;
  const cache = [];
  const raw = [];
  for (let pass = 0; pass < passes; pass++) {
    log(`entities: raw batched UPDATE, pass ${pass + 1}`);
    raw.push(await rawRun(url, rows));
    log(`entities: WriteBackRepository.update, pass ${pass + 1}`);
    cache.push(await cacheRun(url, rows));
  }
  log('entities: TypeORM repository.update per call, pool 16');
  const typeorm = await typeormRun(url, rows, quick ? 1000 : 4000);
  const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];
  const cacheRows = median(cache.map((c) => c.rowsPerSec));
  const rawRows = median(raw.map((r) => r.rowsPerSec));
  const vsTypeorm = round(cacheRows / typeorm.opsPerSec, 2);
  const vsRaw = round(cacheRows / rawRows, 2);
  const exact = cache.every((c) => c.exact) && raw.every((r) => r.exact) && typeorm.exact;
  return {
    title: 'entities: WriteBackRepository.update against TypeORM repository.update and the raw batched statement',
    metrics: { rows, passes, callers: CALLERS, cache, raw, typeorm, vsTypeorm, vsRaw },
    rows: [
      { figure: 'update(id, { lastSeenAt }), calls + flush', value: cacheRows, unit: 'rows/s' },
      { figure: '  calls alone (in memory)', value: median(cache.map((c) => c.callsPerSec)), unit: 'ops/s' },
      { figure: '  flush() of what was left dirty', value: median(cache.map((c) => c.flushRowsPerSec)), unit: 'rows/s', ratio: round(median(cache.map((c) => c.flushRowsPerSec)) / rawRows, 2) },
      { figure: '  vs TypeORM repository.update (pool 16)', value: typeorm.opsPerSec, unit: 'ops/s', ratio: vsTypeorm },
      { figure: '  vs raw batched UPDATE (1,000 rows, 2 connections)', value: rawRows, unit: 'rows/s', ratio: vsRaw },
    ],
    checks: [
      check('entities.vsTypeorm', 'update vs TypeORM repository.update per call, pool 16', vsTypeorm, '>=', 10, 'x'),
      check('entities.vsRaw', 'update (calls + flush) vs raw batched statement', vsRaw, '>=', 0.6, ''),
      { ...check('entities.exact', 'every row updated (cache, TypeORM, raw)', exact ? 1 : 0, '>=', 1, ''), pass: exact },
    ],
    notes: [
      `${rows} rows, each updated once per pass by ${CALLERS} concurrent callers; the cache figure counts from the first call until flush() committed the last row (durability none, batchSize 1000, flushConcurrency 2). Medians of ${passes} passes.`,
    ],
  };
}
