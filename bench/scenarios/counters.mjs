// Scenario: counters. `service.increment(key, 1)` (coalesced deltas, flushed behind, applied exactly once)
// against, in the same process: (a) write-through `UPDATE ... SET n = n + 1` on a pg pool of 16, and (b) Redis
// INCR through ioredis with auto-pipelining. Hot keys (100) and distinct keys. Every run ends by checking that the
// sums are exact (Postgres for the cache and for (a), Redis for (b)).
import { check, log, performance, round, yieldLoop } from '../lib/util.mjs';
import { pg } from '../lib/db.mjs';
import { startService, freshSchema } from '../lib/service.mjs';

const round2 = (value) => round(value, 2);

const CALLERS = 64;
const HOT_KEYS = 100;

/** `callers` loops calling `op(i)` until `ms` passed; returns how many completed. */
async function loops(ms, callers, op) {
  let stop = false;
  let count = 0;
  let seq = 0;
  const end = performance.now() + ms;
  const timer = setTimeout(() => (stop = true), ms);
  const caller = async () => {
    let sinceYield = 0;
    while (!stop) {
      await op(seq++);
      count++;
      // A caller whose awaits resolve at once (the cache) must still let the timer and the flusher run.
      if (++sinceYield === 256) {
        sinceYield = 0;
        await yieldLoop();
        if (performance.now() >= end) stop = true;
      }
    }
  };
  await Promise.all(Array.from({ length: callers }, caller));
  clearTimeout(timer);
  return count;
}

async function updateBaseline(url, ms, keyOf, tag) {
  const table = `"${freshSchema(tag)}"`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`CREATE TABLE ${table} (key text PRIMARY KEY, n bigint NOT NULL DEFAULT 0)`);
  const pool = new pg.Pool({ connectionString: url, max: 16 });
  // Rows exist first (an UPDATE of a missing row would count nothing); distinct keys: as many as the run can use.
  const text = `INSERT INTO ${table} (key, n) VALUES ($1, 1) ON CONFLICT (key) DO UPDATE SET n = ${table}.n + 1`;
  await loops(200, CALLERS, (i) => pool.query({ name: `inc_${tag}`, text, values: [keyOf(i)] }));
  await admin.query(`UPDATE ${table} SET n = 0`);
  const t0 = performance.now();
  const count = await loops(ms, CALLERS, (i) => pool.query({ name: `inc_${tag}`, text, values: [keyOf(i)] }));
  const seconds = (performance.now() - t0) / 1000;
  const sum = Number((await admin.query(`SELECT coalesce(sum(n), 0)::text AS s FROM ${table}`)).rows[0].s);
  await pool.end();
  await admin.query(`DROP TABLE ${table}`);
  await admin.end();
  return { opsPerSec: Math.round(count / seconds), count, exact: sum === count };
}

async function redisBaseline(ms, keyOf, tag) {
  let Redis;
  try {
    ({ Redis } = await import('ioredis'));
  } catch {
    return { skipped: 'ioredis is not installed' };
  }
  const redis = new Redis({ host: '127.0.0.1', port: 6379, enableAutoPipelining: true, lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
  } catch (error) {
    redis.disconnect();
    return { skipped: `no Redis at 127.0.0.1:6379 (${error.message})` };
  }
  const prefix = `bench:${process.pid}:${tag}:`;
  await loops(200, CALLERS, (i) => redis.incr(prefix + keyOf(i)));
  await deleteKeys(redis, await redis.keys(`${prefix}*`));
  const t0 = performance.now();
  const count = await loops(ms, CALLERS, (i) => redis.incr(prefix + keyOf(i)));
  const seconds = (performance.now() - t0) / 1000;
  const keys = await redis.keys(`${prefix}*`);
  let sum = 0;
  for (let i = 0; i < keys.length; i += 1000) {
    for (const v of await redis.mget(...keys.slice(i, i + 1000))) sum += Number(v);
  }
  await deleteKeys(redis, keys);
  redis.disconnect();
  return { opsPerSec: Math.round(count / seconds), count, exact: sum === count };
}

/** DEL in chunks: one call with every key of a distinct-key run would overflow the argument stack. */
async function deleteKeys(redis, keys) {
  for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
}

async function cacheRun(url, ms, keyOf, tag) {
  const svc = await startService(url, { flushIntervalMs: 200, maxDirtyEntries: 1_000_000, maxEntries: 1_000_000 }, tag);
  try {
    const t0 = performance.now();
    const count = await loops(ms, CALLERS, (i) => svc.service.increment(keyOf(i), 1));
    const seconds = (performance.now() - t0) / 1000;
    await svc.service.flush();
    const table = `"${svc.schema}".write_back_entries`;
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const sum = Number((await client.query(`SELECT coalesce(sum((value #>> '{}')::numeric), 0)::text AS s FROM ${table}`)).rows[0].s);
    await client.end();
    return { opsPerSec: Math.round(count / seconds), count, exact: sum === count, flushes: svc.service.stats().flushes, errors: svc.logger.errors };
  } finally {
    await svc.close({ abandon: false });
  }
}

export async function run(ctx) {
  const { quick, url } = ctx;
  // Rounds of (cache, UPDATE, Redis), each ratio taken within its round and the median reported: Redis is another
  // process on the same 2 cores, so a change of the machine's load between runs must not move the ratio.
  const rounds = quick ? 1 : 3;
  const ms = quick ? 600 : 1000;
  const shapes = [
    { name: 'hot', keyOf: (i) => `c:${i % HOT_KEYS}` },
    { name: 'distinct', keyOf: (i) => `d:${i}` },
  ];
  const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];
  const results = {};
  for (const shape of shapes) {
    const runs = [];
    for (let round = 1; round <= rounds; round++) {
      log(`counters ${shape.name} round ${round}/${rounds}: write-back increment, UPDATE n = n + 1 (pool 16), Redis INCR`);
      const cache = await cacheRun(url, ms, shape.keyOf, `cnt_${shape.name}_${round}`);
      const update = await updateBaseline(url, ms, shape.keyOf, `upd_${shape.name}_${round}`);
      const redis = await redisBaseline(ms, shape.keyOf, `${shape.name}_${round}`);
      runs.push({ cache, update, redis });
    }
    const redisRuns = runs.filter((r) => r.redis.skipped === undefined);
    results[shape.name] = {
      runs,
      cache: { opsPerSec: median(runs.map((r) => r.cache.opsPerSec)), exact: runs.every((r) => r.cache.exact) },
      update: { opsPerSec: median(runs.map((r) => r.update.opsPerSec)), exact: runs.every((r) => r.update.exact) },
      redis:
        redisRuns.length === 0
          ? runs[0].redis
          : { opsPerSec: median(redisRuns.map((r) => r.redis.opsPerSec)), exact: redisRuns.every((r) => r.redis.exact) },
      vsUpdate: round2(median(runs.map((r) => r.cache.opsPerSec / r.update.opsPerSec))),
      vsRedis: redisRuns.length === 0 ? null : round2(median(redisRuns.map((r) => r.cache.opsPerSec / r.redis.opsPerSec))),
    };
  }
  const exact = Object.values(results).every((r) => r.cache.exact && r.update.exact && (r.redis.skipped !== undefined || r.redis.exact));
  const rows = [];
  const checks = [];
  for (const [name, r] of Object.entries(results)) {
    rows.push({ figure: `increment, ${name} keys`, value: r.cache.opsPerSec, unit: 'ops/s' });
    rows.push({ figure: `  vs UPDATE n = n + 1 (pool 16)`, value: r.update.opsPerSec, unit: 'ops/s', ratio: r.vsUpdate });
    rows.push(
      r.redis.skipped
        ? { figure: '  vs Redis INCR', text: `skipped: ${r.redis.skipped}` }
        : { figure: '  vs Redis INCR (ioredis, auto-pipelining)', value: r.redis.opsPerSec, unit: 'ops/s', ratio: r.vsRedis },
    );
    checks.push(check(`counters.${name}.vsUpdate`, `increment (${name}) vs write-through UPDATE, pool 16`, r.vsUpdate, '>=', 20, 'x'));
    if (r.vsRedis !== null) checks.push(check(`counters.${name}.vsRedis`, `increment (${name}) vs Redis INCR`, r.vsRedis, '>=', 3, 'x'));
  }
  checks.push({ ...check('counters.exact', 'every sum exact (cache in Postgres, UPDATE, Redis)', exact ? 1 : 0, '>=', 1, ''), pass: exact });
  return {
    title: 'counters: increment against UPDATE n = n + 1 and Redis INCR',
    metrics: { callers: CALLERS, hotKeys: HOT_KEYS, seconds: ms / 1000, rounds, ...results },
    rows,
    checks,
    notes: [
      `${CALLERS} concurrent callers each; the cache's calls resolve in memory (durability none), its flusher writes behind every 200 ms; the sums are checked after a final flush().`,
      `${rounds} round(s) of ${ms / 1000} s per contender; figures are medians, ratios the median of the per-round ratios.`,
    ],
  };
}
