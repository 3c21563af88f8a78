// Scenario 2: `get` hits against Map.get + JSON.parse; and a stampede of concurrent misses on one key.
import { isDeepStrictEqual } from 'node:util';
import {
  VALUES, VALUE_POOL_SIZE, check, log, makeKeys, median, nsHistogram, performance, round, shuffledIndexes, spread,
  usSummary, yieldLoop,
} from '../lib/util.mjs';
import { noByteBounds, startService } from '../lib/service.mjs';
import { pg } from '../lib/db.mjs';

const CHUNK = 500;
const SAMPLE_MASK = 7;
const STAMPEDE = 1000;

async function baselineLoop(map, keys, order, ms, hist) {
  const started = performance.now();
  const end = started + ms;
  const n = order.length;
  let i = 0;
  let sink = 0;
  while (performance.now() < end) {
    const stop = i + CHUNK;
    for (; i < stop; i++) {
      const key = keys[order[i % n]];
      if ((i & SAMPLE_MASK) === 0) {
        const t0 = performance.now();
        const value = JSON.parse(map.get(key));
        hist.record(Math.max(1, Math.round((performance.now() - t0) * 1e6)));
        sink += value.id;
      } else {
        sink += JSON.parse(map.get(key)).id;
      }
    }
    await yieldLoop();
  }
  if (sink === -1) log('unreachable');
  return { ops: i, ms: performance.now() - started };
}

async function serviceLoop(service, keys, order, ms, hist) {
  const started = performance.now();
  const end = started + ms;
  const n = order.length;
  let i = 0;
  let sink = 0;
  while (performance.now() < end) {
    const stop = i + CHUNK;
    for (; i < stop; i++) {
      const key = keys[order[i % n]];
      if ((i & SAMPLE_MASK) === 0) {
        const t0 = performance.now();
        const value = await service.get(key);
        hist.record(Math.max(1, Math.round((performance.now() - t0) * 1e6)));
        sink += value.id;
      } else {
        sink += (await service.get(key)).id;
      }
    }
    await yieldLoop();
  }
  if (sink === -1) log('unreachable');
  return { ops: i, ms: performance.now() - started };
}

const opsPerSec = (r) => (r.ops / r.ms) * 1000;

export async function run(ctx) {
  const { quick, url } = ctx;
  const keyCount = quick ? 20_000 : 100_000;
  const roundMs = quick ? 300 : 1500;
  const rounds = quick ? 2 : 3;
  const keys = makeKeys(keyCount, 'get:');
  const order = shuffledIndexes(keyCount, 1 << 20, 777);
  const svc = await startService(url, { autoFlush: false, maxEntries: keyCount * 2, maxDirtyEntries: keyCount * 2, ...noByteBounds }, 'get');
  const { service } = svc;
  const map = new Map();
  for (let i = 0; i < keyCount; i++) {
    const value = VALUES[i % VALUE_POOL_SIZE];
    await service.set(keys[i], value);
    map.set(keys[i], JSON.stringify(value));
  }

  const measure = async (label) => {
    await baselineLoop(map, keys, order, 200, nsHistogram());
    await serviceLoop(service, keys, order, 200, nsHistogram());
    const bh = nsHistogram();
    const sh = nsHistogram();
    const base = [];
    const svcOps = [];
    for (let r = 0; r < rounds; r++) {
      base.push(opsPerSec(await baselineLoop(map, keys, order, roundMs, bh)));
      svcOps.push(opsPerSec(await serviceLoop(service, keys, order, roundMs, sh)));
    }
    const result = {
      baselineOpsPerSec: Math.round(median(base)),
      serviceOpsPerSec: Math.round(median(svcOps)),
      ratio: round(median(svcOps) / median(base), 3),
      ratioSpread: spread(svcOps.map((s, i) => round(s / base[i], 3))),
      serviceLatencyUs: usSummary(sh),
      baselineLatencyUs: usSummary(bh),
    };
    log(`get ${label}: service ${result.serviceOpsPerSec}/s vs baseline ${result.baselineOpsPerSec}/s, ratio ${result.ratio}`);
    return result;
  };

  log(`get: hits on ${keyCount} dirty entries`);
  const dirtyHits = await measure('dirty hits');
  await service.flush();
  if (service.stats().cleanEntries < keyCount) throw new Error(`expected ${keyCount} clean entries, got ${service.stats().cleanEntries}`);
  log(`get: hits on ${keyCount} clean entries`);
  const cleanHits = await measure('clean hits');

  // Stampede: a row that exists in Postgres but not in memory, then 1,000 concurrent gets of it.
  const sql = new pg.Client({ connectionString: url });
  await sql.connect();
  const stampedes = [];
  for (let s = 0; s < 3; s++) {
    const key = `stampede:${s}`;
    const stored = { ...VALUES[s], note: 'written straight to Postgres' };
    await sql.query(
      `INSERT INTO "${svc.schema}".write_back_entries (key, value, version, updated_at) VALUES ($1, $2::jsonb, 1, now())`,
      [key, JSON.stringify(stored)],
    );
    const before = service.stats();
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: STAMPEDE }, () => service.get(key)));
    const ms = performance.now() - t0;
    const after = service.stats();
    const allEqual = results.every((r) => isDeepStrictEqual(r, stored));
    // Distinct objects: each caller gets its own copy.
    const distinctCopies = new Set(results).size;
    stampedes.push({ key, concurrentGets: STAMPEDE, loadsDelta: after.loads - before.loads, missesDelta: after.misses - before.misses, allReturnedTheRow: allEqual, distinctCopies, ms: round(ms, 2) });
  }
  // The same for a key that is nowhere (Postgres answers "no row").
  const absentBefore = service.stats().loads;
  const absent = await Promise.all(Array.from({ length: STAMPEDE }, () => service.get('stampede:absent')));
  const absentLoads = service.stats().loads - absentBefore;
  await sql.end();
  await svc.close();

  const loadsDelta = Math.max(...stampedes.map((s) => s.loadsDelta));
  const allRight = stampedes.every((s) => s.loadsDelta === 1 && s.allReturnedTheRow);
  log(`get stampede: loads deltas ${stampedes.map((s) => s.loadsDelta).join(', ')}`);
  return {
    title: 'get hits, and a stampede of concurrent misses',
    metrics: {
      keys: keyCount,
      method: `await service.get() one after the other on ${keyCount} keys in a fixed pseudo-random order, yielding every ${CHUNK}; every ${SAMPLE_MASK + 1}th call timed; baseline JSON.parse(map.get(key)) on the same JSON texts.`,
      dirtyHits,
      cleanHits,
      stampede: stampedes,
      stampedeOfAbsentKey: { concurrentGets: STAMPEDE, loadsDelta: absentLoads, allUndefined: absent.every((r) => r === undefined) },
      errors: svc.logger.errors,
    },
    rows: [
      { figure: 'get, hits on clean entries', value: cleanHits.serviceOpsPerSec, unit: 'ops/s', baseline: cleanHits.baselineOpsPerSec, ratio: cleanHits.ratio },
      { figure: '  latency p50 / p99 / p999', text: fmtLat(cleanHits.serviceLatencyUs), baselineText: fmtLat(cleanHits.baselineLatencyUs) },
      { figure: 'get, hits on dirty entries', value: dirtyHits.serviceOpsPerSec, unit: 'ops/s', baseline: dirtyHits.baselineOpsPerSec, ratio: dirtyHits.ratio },
      { figure: '  latency p50 / p99 / p999', text: fmtLat(dirtyHits.serviceLatencyUs), baselineText: fmtLat(dirtyHits.baselineLatencyUs) },
      { figure: `stampede: ${STAMPEDE} gets of a row in Postgres`, text: `loads ${stampedes.map((s) => s.loadsDelta).join(', ')} in ${stampedes.map((s) => s.ms).join(', ')} ms`, baselineText: 'target: 1 load each' },
      { figure: `stampede: ${STAMPEDE} gets of an absent key`, text: `loads ${absentLoads}` },
    ],
    checks: [
      { ...check('get.stampede.loads', `stampede of ${STAMPEDE} misses costs one load`, loadsDelta, '<=', 1, 'loads'), pass: allRight },
    ],
    notes: ['No ratio target for get hits in DESIGN.md; reported for information.'],
  };
}

function fmtLat(l) {
  return `${l.p50} / ${l.p99} / ${l.p999} µs`;
}
