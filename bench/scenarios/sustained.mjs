// Scenario 3: sustained write-back of distinct keys at increasing offered rates, against (a) write-through
// single-row upserts on a pool of 16 and (b) the raw batched unnest upsert on 2 connections, measured here.
import {
  VALUES, VALUE_JSON, VALUE_POOL_SIZE, check, log, median, msSummary, nsHistogram, percentile, performance, round,
  sleep, yieldLoop,
} from '../lib/util.mjs';
import { connectClients, createEntriesTable, pg, singleUpsertSql, unnestBatch, unnestUpsertSql } from '../lib/db.mjs';
import { startService } from '../lib/service.mjs';

const POOL_MASK = VALUE_POOL_SIZE - 1;

/** (a) Write-through: `callers` concurrent loops of single-row guarded upserts on a pg.Pool of `poolSize`. */
async function writeThroughBaseline(url, table, ms, callers, poolSize) {
  const pool = new pg.Pool({ connectionString: url, max: poolSize });
  const text = singleUpsertSql(table);
  const base = Date.now() * 1000;
  let seq = 0;
  const runFor = async (duration, hist) => {
    let stop = false;
    let count = 0;
    const t0 = performance.now();
    const end = t0 + duration;
    const caller = async () => {
      while (!stop) {
        const i = seq++;
        const s = performance.now();
        await pool.query({ name: 'wt_upsert', text, values: [`wt:${i}`, VALUE_JSON[i & POOL_MASK], base + i] });
        const e = performance.now();
        if (e > end) {
          stop = true;
          break;
        }
        count++;
        hist.record(Math.max(1, Math.round((e - s) * 1e6)));
      }
    };
    await Promise.all(Array.from({ length: callers }, caller));
    return { count, ms: duration };
  };
  await runFor(300, nsHistogram()); // connections opened, statements prepared
  const hist = nsHistogram();
  const r = await runFor(ms, hist);
  await pool.end();
  return { opsPerSec: Math.round((r.count / r.ms) * 1000), writes: r.count, seconds: ms / 1000, callers, poolSize, latencyMs: msSummary(hist) };
}

/** (b) The raw batched guarded upsert: `connections` clients, each sending batches of `batch` distinct rows. */
async function batchedBaseline(url, table, ms, connections, batch, keyPrefix) {
  const clients = await connectClients(url, connections);
  const text = unnestUpsertSql(table);
  const base = Date.now() * 1000;
  const key = (i) => `${keyPrefix}${i}`;
  const json = (i) => VALUE_JSON[i & POOL_MASK];
  const version = (i) => base + i;
  let seq = 0;
  const runFor = async (duration, hist) => {
    let rows = 0;
    const t0 = performance.now();
    const end = t0 + duration;
    const worker = async (client) => {
      while (performance.now() < end) {
        const params = unnestBatch(seq, batch, key, json, version);
        seq += batch;
        const s = performance.now();
        await client.query(text, params);
        const e = performance.now();
        if (e <= end) {
          rows += batch;
          hist.record(Math.max(1, Math.round((e - s) * 1e6)));
        }
      }
    };
    await Promise.all(clients.map(worker));
    return { rows, ms: duration };
  };
  await runFor(300, nsHistogram());
  const hist = nsHistogram();
  const r = await runFor(ms, hist);
  await Promise.all(clients.map((c) => c.end()));
  return { rowsPerSec: Math.round((r.rows / r.ms) * 1000), rows: r.rows, seconds: ms / 1000, connections, batch, batchLatencyMs: msSummary(hist) };
}

/**
 * One step: distinct-key writes offered at `rate` per second for `ms` (open loop: the producer catches up after a
 * backpressure wait), flush lag sampled every 50 ms. Then the backlog is drained (timed, not counted).
 */
async function step(service, rate, ms, state) {
  const s0 = service.stats();
  const lagSamples = [];
  const dirtySamples = [];
  const sampler = setInterval(() => {
    const s = service.stats();
    lagSamples.push(s.flushLagMs);
    dirtySamples.push(s.dirty);
  }, 50);
  const setHist = nsHistogram();
  let offered = 0;
  let accepted = 0;
  const t0 = performance.now();
  const end = t0 + ms;
  let now = t0;
  while (now < end) {
    const due = Math.floor((rate * (now - t0)) / 1000);
    if (offered >= due) {
      await sleep(1);
      now = performance.now();
      continue;
    }
    const stop = Math.min(due, offered + 500);
    while (offered < stop) {
      const i = state.next++;
      offered++;
      if ((i & 7) === 0) {
        const s = performance.now();
        await service.set(`sw:${i}`, VALUES[i & POOL_MASK]);
        now = performance.now();
        setHist.record(Math.max(1, Math.round((now - s) * 1e6)));
        if (now >= end) break;
      } else {
        await service.set(`sw:${i}`, VALUES[i & POOL_MASK]);
      }
      accepted++;
    }
    await yieldLoop();
    now = performance.now();
  }
  const elapsed = performance.now() - t0;
  clearInterval(sampler);
  const s1 = service.stats();
  const d0 = performance.now();
  const backlog = s1.dirty;
  await service.flush();
  const drainMs = performance.now() - d0;
  const seconds = elapsed / 1000;
  return {
    offeredPerSec: rate,
    seconds: round(seconds, 2),
    acceptedPerSec: Math.round(accepted / seconds),
    rowsFlushedPerSec: Math.round((s1.flushedEntries - s0.flushedEntries) / seconds),
    flushLagMs: {
      samples: lagSamples.length,
      p50: percentile(lagSamples, 50),
      p99: percentile(lagSamples, 99),
      max: lagSamples.length ? Math.max(...lagSamples) : null,
    },
    dirtyMax: dirtySamples.length ? Math.max(...dirtySamples) : 0,
    setLatencyMs: msSummary(setHist),
    flushes: s1.flushes - s0.flushes,
    flushErrors: s1.flushErrors - s0.flushErrors,
    backlogAtEnd: backlog,
    drainMs: Math.round(drainMs),
  };
}

export async function run(ctx) {
  const { quick, url } = ctx;
  const rates = quick ? [50_000, 150_000] : [20_000, 50_000, 100_000, 150_000];
  const stepMs = quick ? 1500 : 5000;
  const baselineMs = quick ? 1000 : 5000;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const schema = `bench_sustained_${process.pid}`;
  await admin.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);

  log(`sustained: baseline (a) write-through, pool 16, 64 callers, ${baselineMs} ms`);
  await createEntriesTable(admin, `${schema}.write_through`);
  const writeThrough = await writeThroughBaseline(url, `${schema}.write_through`, baselineMs, 64, 16);
  log(`sustained: (a) ${writeThrough.opsPerSec} writes/s`);

  const raw = [];
  const runRaw = async (n) => {
    await createEntriesTable(admin, `${schema}.raw_batched_${n}`);
    const r = await batchedBaseline(url, `${schema}.raw_batched_${n}`, baselineMs, 2, 1000, `raw${n}:`);
    log(`sustained: (b) raw batched upsert ${r.rowsPerSec} rows/s`);
    raw.push(r);
  };
  log(`sustained: baseline (b) raw unnest upsert, batch 1000, 2 connections, ${baselineMs} ms`);
  await runRaw(0);

  const serviceOptions = {
    durability: 'none',
    autoFlush: true,
    flushIntervalMs: 1000,
    batchSize: 1000,
    flushConcurrency: 2,
    maxDirtyEntries: 100_000,
    backpressure: 'block',
    backpressureTimeoutMs: 30_000,
  };
  const svc = await startService(url, serviceOptions, 'sustained');
  const state = { next: 0 };
  // Warm-up: JIT and connections.
  await step(svc.service, 20_000, quick ? 300 : 500, state);
  const steps = [];
  for (const rate of rates) {
    const r = await step(svc.service, rate, stepMs, state);
    log(`sustained: offered ${rate}/s -> accepted ${r.acceptedPerSec}/s, flushed ${r.rowsFlushedPerSec} rows/s, lag p99 ${r.flushLagMs.p99} ms`);
    steps.push(r);
  }
  const errors = svc.logger.errors;
  await svc.close({ abandon: false });
  if (!quick) await runRaw(1);
  await admin.query(`DROP SCHEMA ${schema} CASCADE`);
  await admin.end();

  const rawRowsPerSec = Math.round(median(raw.map((r) => r.rowsPerSec)));
  const best = steps.reduce((a, b) => (b.rowsFlushedPerSec > a.rowsFlushedPerSec ? b : a));
  const lagP99 = Math.max(...steps.map((s) => s.flushLagMs.p99 ?? 0));
  const vsRaw = best.rowsFlushedPerSec / rawRowsPerSec;
  const vsWriteThrough = best.rowsFlushedPerSec / writeThrough.opsPerSec;
  return {
    title: 'sustained write-back to Postgres (distinct keys)',
    metrics: {
      method:
        'One producer offers distinct-key set() calls at a fixed rate (open loop, yielding every 500) for each step; ' +
        'rows flushed/s = stats().flushedEntries delta / step time; flush lag sampled from stats().flushLagMs every 50 ms; ' +
        'the backlog is drained (flush()) between steps, untimed. Baselines on fresh tables of the same shape in the same process.',
      serviceOptions,
      baselineWriteThrough: writeThrough,
      baselineRawBatched: raw,
      baselineRawBatchedRowsPerSec: rawRowsPerSec,
      steps,
      bestStep: best.offeredPerSec,
      ratioToRawBatched: round(vsRaw, 3),
      ratioToWriteThrough: round(vsWriteThrough, 2),
      errors,
    },
    rows: [
      { figure: '(a) write-through, pool 16, 64 callers', value: writeThrough.opsPerSec, unit: 'writes/s', text: `${writeThrough.opsPerSec.toLocaleString('en-US')} writes/s`, baselineText: `p50 ${writeThrough.latencyMs.p50} / p99 ${writeThrough.latencyMs.p99} ms` },
      { figure: '(b) raw unnest upsert, batch 1000, 2 conns', text: `${rawRowsPerSec.toLocaleString('en-US')} rows/s`, baselineText: raw.length > 1 ? `runs: ${raw.map((r) => r.rowsPerSec).join(', ')}` : '' },
      ...steps.map((s) => ({
        figure: `offered ${s.offeredPerSec / 1000}k/s: accepted / flushed`,
        text: `${s.acceptedPerSec.toLocaleString('en-US')} / ${s.rowsFlushedPerSec.toLocaleString('en-US')} rows/s`,
        baselineText: `lag p50 ${s.flushLagMs.p50} p99 ${s.flushLagMs.p99} max ${s.flushLagMs.max} ms`,
      })),
      { figure: 'best rows flushed/s vs (b)', value: best.rowsFlushedPerSec, unit: 'rows/s', baseline: rawRowsPerSec, ratio: round(vsRaw, 3) },
      { figure: 'best rows flushed/s vs (a)', value: best.rowsFlushedPerSec, unit: 'rows/s', baseline: writeThrough.opsPerSec, baselineUnit: 'writes/s', ratio: round(vsWriteThrough, 2) },
    ],
    checks: [
      check('sustained.vsRawBatched', 'rows flushed/s vs raw 2-conn batched upsert', vsRaw, '>=', 0.6, 'x'),
      check('sustained.vsWriteThrough', 'rows flushed/s vs write-through pool of 16', vsWriteThrough, '>=', 6, 'x'),
      check('sustained.lagP99', 'flush lag p99 (worst step)', lagP99, '<=', 2000, 'ms'),
    ],
  };
}
