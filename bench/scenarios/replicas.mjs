// Scenario 7: several instances on one Postgres. (1) Commit on one instance -> a fresh read on the two others
// (they held the old value clean): p50 / p99. (2) What invalidation costs the flusher: rows flushed/s of one
// instance with invalidation on (NOTIFY per batch, the upsert/delete fix-up statement, another instance listening)
// against `singleInstance: true` (none of it), alternated in the same process.
import { VALUE_JSON, VALUE_POOL_SIZE, check, log, median, performance, round, yieldLoop } from '../lib/util.mjs';
import { startService, freshSchema } from '../lib/service.mjs';

const POOL_MASK = VALUE_POOL_SIZE - 1;

async function freshReadLatencies(url, rounds) {
  const schema = freshSchema('replicas');
  const options = { schema, autoFlush: false };
  const a = await startService(url, options, 'replicas');
  const others = [await startService(url, options, 'replicas'), await startService(url, options, 'replicas')];
  const latencies = [];
  try {
    for (let i = 0; i < rounds; i++) {
      const key = `fresh:${i % 50}`;
      await a.service.set(key, { i });
      await a.service.flush();
      for (const o of others) await o.service.get(key); // a clean copy of { i } on each
      await a.service.set(key, { i: i + 1 });
      await a.service.flush();
      const committed = performance.now();
      // Each other instance: how long until its get() returns the committed value.
      for (const o of others) {
        for (;;) {
          const value = await o.service.get(key);
          if (value?.i === i + 1) break;
          await yieldLoop();
        }
        latencies.push(performance.now() - committed);
      }
    }
  } finally {
    for (const s of [a, ...others]) await s.close({ abandon: false });
  }
  return latencies;
}

async function flushRate(url, singleInstance, rows) {
  const schema = freshSchema('replicas_rate');
  const options = { schema, autoFlush: false, singleInstance, maxDirtyEntries: rows + 1, batchSize: 1000, flushConcurrency: 2 };
  const writer = await startService(url, options, 'replicas');
  // With invalidation on, another instance listens (and receives every notification), as a replica would.
  const listener = singleInstance ? undefined : await startService(url, { ...options, maxDirtyEntries: 1000 }, 'replicas');
  try {
    for (let i = 0; i < rows; i++) await writer.service.set(`r:${i}`, JSON.parse(VALUE_JSON[i & POOL_MASK]));
    const t0 = performance.now();
    await writer.service.flush();
    const seconds = (performance.now() - t0) / 1000;
    return Math.round(rows / seconds);
  } finally {
    await listener?.close({ abandon: false });
    await writer.close({ abandon: false });
  }
}

/** N instances on one schema, each holding rows/N distinct keys, all flushing at once: rows/s together. */
async function replicasTogether(url, count, rows) {
  const schema = freshSchema('replicas_n');
  const options = { schema, autoFlush: false, maxDirtyEntries: rows + 1, batchSize: 1000, flushConcurrency: 2 };
  const instances = [];
  for (let n = 0; n < count; n++) instances.push(await startService(url, options, 'replicas'));
  try {
    const per = Math.floor(rows / count);
    for (const [n, s] of instances.entries()) {
      for (let i = 0; i < per; i++) await s.service.set(`n${n}:${i}`, JSON.parse(VALUE_JSON[i & POOL_MASK]));
    }
    const t0 = performance.now();
    await Promise.all(instances.map((s) => s.service.flush()));
    return Math.round((per * count) / ((performance.now() - t0) / 1000));
  } finally {
    for (const s of instances) await s.close({ abandon: false });
  }
}

export async function run({ url, quick }) {
  const rounds = quick ? 40 : 200;
  log(`replicas: commit -> fresh read on 2 other instances, ${rounds} rounds`);
  const latencies = (await freshReadLatencies(url, rounds)).sort((x, y) => x - y);
  const p = (q) => round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))], 2);
  log(`replicas: fresh read p50 ${p(0.5)} ms, p99 ${p(0.99)} ms`);

  const rows = quick ? 20_000 : 100_000;
  const repeats = quick ? 1 : 5;
  const on = [];
  const off = [];
  await flushRate(url, false, 5000); // warm-up
  for (let r = 0; r < repeats; r++) {
    off.push(await flushRate(url, true, rows));
    on.push(await flushRate(url, false, rows));
    log(`replicas: flush of ${rows} rows: invalidation off ${off.at(-1)} rows/s, on ${on.at(-1)} rows/s`);
  }
  // Each pair runs back to back (the load of this shared machine moves between pairs more than within one).
  const ratio = median(on.map((rate, i) => rate / off[i]));
  const together = {};
  for (const count of [1, 2, 3]) {
    together[count] = await replicasTogether(url, count, rows);
    log(`replicas: ${count} instance(s) flushing ${rows} rows together: ${together[count]} rows/s`);
  }
  return {
    title: 'replicas: invalidation across instances',
    metrics: {
      method:
        'Fresh read: instance A commits (flush() resolved) a new value of a key that B and C hold clean; each of B and C ' +
        'polls get() (yielding between calls) until it returns the new value. Cost: flush() of distinct rows on one ' +
        'instance, invalidation on (another instance listening) vs singleInstance: true, back to back, median of the ' +
        'pairs\' ratios. Together: 1-3 instances on one schema, each flushing its share of distinct rows at once.',
      rounds,
      freshReadMs: { p50: p(0.5), p99: p(0.99), max: p(1) },
      flushRows: rows,
      rowsPerSecOn: on,
      rowsPerSecOff: off,
      ratioOnToOff: round(ratio, 3),
      rowsPerSecByInstances: together,
    },
    rows: [
      { figure: 'commit -> fresh read on the other instances, p50 / p99', text: `${p(0.5)} / ${p(0.99)} ms` },
      ...Object.entries(together).map(([count, rate]) => ({
        figure: `${count} instance(s) flushing together (2 connections each)`,
        text: `${rate.toLocaleString('en-US')} rows/s`,
      })),
      { figure: 'flush rows/s, invalidation on vs off (median of pairs)', value: Math.round(median(on)), unit: 'rows/s', baseline: Math.round(median(off)), ratio: round(ratio, 3) },
    ],
    checks: [
      check('replicas.freshReadP99', 'commit -> fresh read on other instances, p99', p(0.99), '<=', 100, 'ms'),
      check('replicas.invalidationCost', 'flush rows/s with invalidation vs without', ratio, '>=', 0.9, 'x'),
    ],
  };
}
