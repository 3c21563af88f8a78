// Scenario 1: the `set` hot path (durability none) against Map.set + JSON.stringify, with the flusher running.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import {
  VALUES, VALUE_POOL_SIZE, check, log, makeKeys, median, meanValueBytes, nsHistogram, performance, round, shuffledIndexes,
  spread, usSummary, yieldLoop,
} from '../lib/util.mjs';
import { noByteBounds, startService } from '../lib/service.mjs';

const POOL_MASK = VALUE_POOL_SIZE - 1;
/** Operations between two yields to the event loop (where the flusher's timers and I/O run). */
const CHUNK = 500;
/** Every 8th call is timed on its own (performance.now() costs ~80 ns here, so not every call). */
const SAMPLE_MASK = 7;
const HOT_KEYS = 10_000;

/** Baseline: a plain Map of key -> JSON text. Same loop shape, same sampling as the service loop. */
async function baselineLoop(map, keys, order, maxOps, ms, hist) {
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const end = started + ms;
  const n = order.length;
  let i = 0;
  while (i < maxOps && performance.now() < end) {
    const stop = Math.min(maxOps, i + CHUNK);
    for (; i < stop; i++) {
      const key = keys[order[i % n]];
      const value = VALUES[i & POOL_MASK];
      if ((i & SAMPLE_MASK) === 0) {
        const t0 = performance.now();
        map.set(key, JSON.stringify(value));
        hist.record(Math.max(1, Math.round((performance.now() - t0) * 1e6)));
      } else {
        map.set(key, JSON.stringify(value));
      }
    }
    await yieldLoop();
  }
  return { ops: i, ms: performance.now() - started, cpuMs: cpuMs(cpu0) };
}

/** The library: `await service.set(key, value)`, one call after the other, yielding every CHUNK calls. */
async function serviceLoop(service, keys, order, maxOps, ms, hist) {
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const end = started + ms;
  const n = order.length;
  let i = 0;
  while (i < maxOps && performance.now() < end) {
    const stop = Math.min(maxOps, i + CHUNK);
    for (; i < stop; i++) {
      const key = keys[order[i % n]];
      const value = VALUES[i & POOL_MASK];
      if ((i & SAMPLE_MASK) === 0) {
        const t0 = performance.now();
        await service.set(key, value);
        hist.record(Math.max(1, Math.round((performance.now() - t0) * 1e6)));
      } else {
        await service.set(key, value);
      }
    }
    await yieldLoop();
  }
  return { ops: i, ms: performance.now() - started, cpuMs: cpuMs(cpu0) };
}

function opsPerSec(r) {
  return (r.ops / r.ms) * 1000;
}

/** Operations per second of this process's CPU time (all its threads): steadier than wall time on a shared machine. */
function opsPerCpuSec(r) {
  return (r.ops / r.cpuMs) * 1000;
}

function cpuMs(since) {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}

export async function run(ctx) {
  const { quick, url } = ctx;
  const distinctCount = quick ? 200_000 : 1_000_000;
  const roundMs = quick ? 300 : 1500;
  const rounds = quick ? 3 : 5;
  const hotKeys = makeKeys(HOT_KEYS, 'hot:');
  const hotOrder = shuffledIndexes(HOT_KEYS, 1 << 20);
  const serviceOptions = {
    durability: 'none',
    autoFlush: true,
    maxDirtyEntries: distinctCount + 100_000,
    ...noByteBounds,
    backpressure: 'block',
  };

  // --- 10k hot keys: alternating rounds baseline / service, medians reported.
  log(`set: hot keys, ${rounds} rounds of ${roundMs} ms per side`);
  const hot = await startService(url, serviceOptions, 'sethot');
  const hotMap = new Map();
  // Warm-up (JIT) on both sides, not measured.
  await baselineLoop(hotMap, hotKeys, hotOrder, Infinity, 200, nsHistogram());
  await serviceLoop(hot.service, hotKeys, hotOrder, Infinity, 200, nsHistogram());
  const hotBaseHist = nsHistogram();
  const hotSvcHist = nsHistogram();
  const hotBase = [];
  const hotSvc = [];
  const hotBaseCpu = [];
  const hotSvcCpu = [];
  const elDelay = monitorEventLoopDelay({ resolution: 10 });
  const { flushedEntries: flushed0, writes: writes0 } = hot.service.stats();
  let svcMs = 0;
  for (let r = 0; r < rounds; r++) {
    const base = await baselineLoop(hotMap, hotKeys, hotOrder, Infinity, roundMs, hotBaseHist);
    hotBase.push(opsPerSec(base));
    hotBaseCpu.push(opsPerCpuSec(base));
    elDelay.enable();
    const res = await serviceLoop(hot.service, hotKeys, hotOrder, Infinity, roundMs, hotSvcHist);
    elDelay.disable();
    svcMs += res.ms;
    hotSvc.push(opsPerSec(res));
    hotSvcCpu.push(opsPerCpuSec(res));
  }
  const hotStats = hot.service.stats();
  const hotFlushed = hotStats.flushedEntries - flushed0;
  await hot.close();
  const hotEventLoop = { p50Ms: round(elDelay.percentile(50) / 1e6), p99Ms: round(elDelay.percentile(99) / 1e6), maxMs: round(elDelay.max / 1e6) };
  const hotResult = {
    keys: HOT_KEYS,
    baselineOpsPerSec: Math.round(median(hotBase)),
    serviceOpsPerSec: Math.round(median(hotSvc)),
    baselineRounds: hotBase.map(Math.round),
    serviceRounds: hotSvc.map(Math.round),
    // Median of the per-round ratios: each round pairs a baseline pass with the service pass right after it.
    ratio: round(median(hotSvc.map((s, i) => s / hotBase[i])), 3),
    ratioSpread: spread(hotSvc.map((s, i) => round(s / hotBase[i], 3))),
    cpuRatio: round(median(hotSvcCpu.map((s, i) => s / hotBaseCpu[i])), 3),
    serviceOpsPerCpuSec: Math.round(median(hotSvcCpu)),
    baselineOpsPerCpuSec: Math.round(median(hotBaseCpu)),
    serviceLatencyUs: usSummary(hotSvcHist),
    baselineLatencyUs: usSummary(hotBaseHist),
    rowsFlushedDuringRun: hotFlushed,
    writes: hotStats.writes - writes0,
    flushesDuringRun: hotStats.flushes,
    coalesced: hotStats.coalesced,
    eventLoopDelayWhileSetting: hotEventLoop,
    serviceLibraryHistogramUs: hotStats.setLatencyUs,
  };
  log(`set hot: service ${hotResult.serviceOpsPerSec}/s vs baseline ${hotResult.baselineOpsPerSec}/s, ratio ${hotResult.ratio} (rounds ${hotResult.ratioSpread.min}-${hotResult.ratioSpread.max}), per CPU-s ${hotResult.cpuRatio}`);

  // --- distinct keys: baseline (fresh Map), then the service (fresh schema), then the baseline again.
  // The key array is made only now, so it is not in the heap (and in every GC) during the hot-key rounds.
  log(`set: ${distinctCount} distinct keys`);
  const distinctKeys = makeKeys(distinctCount, 'user:');
  const distinctOrder = Uint32Array.from({ length: distinctCount }, (_, i) => i);
  const distinctBase = [];
  const distinctBaseCpu = [];
  const distinctBaseHist = nsHistogram();
  const runBaselineDistinct = async () => {
    const map = new Map();
    const r = await baselineLoop(map, distinctKeys, distinctOrder, distinctCount, Infinity, distinctBaseHist);
    distinctBase.push(opsPerSec(r));
    distinctBaseCpu.push(opsPerCpuSec(r));
    if (map.size !== distinctCount) throw new Error(`baseline map holds ${map.size}`);
  };
  await runBaselineDistinct();
  if (globalThis.gc) globalThis.gc();
  const distinct = await startService(url, serviceOptions, 'setdistinct');
  // Warm-up of this instance on other keys (JIT is warm already from the hot run).
  await serviceLoop(distinct.service, hotKeys, hotOrder, quick ? 5000 : 20_000, Infinity, nsHistogram());
  await distinct.service.flush();
  const d0 = distinct.service.stats();
  const distinctSvcHist = nsHistogram();
  const elDelay2 = monitorEventLoopDelay({ resolution: 10 });
  elDelay2.enable();
  const dres = await serviceLoop(distinct.service, distinctKeys, distinctOrder, distinctCount, Infinity, distinctSvcHist);
  elDelay2.disable();
  const d1 = distinct.service.stats();
  await distinct.close();
  if (globalThis.gc) globalThis.gc();
  if (!quick) await runBaselineDistinct();
  const distinctSvcOps = opsPerSec(dres);
  const distinctResult = {
    keys: distinctCount,
    baselineOpsPerSec: Math.round(median(distinctBase)),
    baselineRuns: distinctBase.map(Math.round),
    serviceOpsPerSec: Math.round(distinctSvcOps),
    serviceSeconds: round(dres.ms / 1000, 3),
    ratio: round(distinctSvcOps / median(distinctBase), 3),
    cpuRatio: round(opsPerCpuSec(dres) / median(distinctBaseCpu), 3),
    serviceOpsPerCpuSec: Math.round(opsPerCpuSec(dres)),
    baselineOpsPerCpuSec: Math.round(median(distinctBaseCpu)),
    serviceLatencyUs: usSummary(distinctSvcHist),
    baselineLatencyUs: usSummary(distinctBaseHist),
    rowsFlushedDuringRun: d1.flushedEntries - d0.flushedEntries,
    dirtyAtEnd: d1.dirty,
    writes: d1.writes - d0.writes,
    eventLoopDelayWhileSetting: {
      p50Ms: round(elDelay2.percentile(50) / 1e6),
      p99Ms: round(elDelay2.percentile(99) / 1e6),
      maxMs: round(elDelay2.max / 1e6),
    },
  };
  log(`set distinct: service ${distinctResult.serviceOpsPerSec}/s vs baseline ${distinctResult.baselineOpsPerSec}/s, ratio ${distinctResult.ratio}, per CPU-s ${distinctResult.cpuRatio}`);

  const p99 = Math.max(hotResult.serviceLatencyUs.p99, distinctResult.serviceLatencyUs.p99);
  return {
    title: 'set hot path (durability none)',
    metrics: {
      valueBytes: meanValueBytes,
      method:
        `await service.set() one call after another, yielding to the event loop (setImmediate) every ${CHUNK} calls so ` +
        `the flusher runs; every ${SAMPLE_MASK + 1}th call timed alone with performance.now() (same sampling on the ` +
        'baseline side); baseline is synchronous map.set(key, JSON.stringify(value)) of the same pre-built objects.',
      serviceOptions,
      hot: hotResult,
      distinct: distinctResult,
      warnings: hot.logger.warnings.length + distinct.logger.warnings.length,
      errors: [...hot.logger.errors, ...distinct.logger.errors],
    },
    rows: [
      { figure: `set, ${HOT_KEYS / 1000}k hot keys`, value: hotResult.serviceOpsPerSec, unit: 'ops/s', baseline: hotResult.baselineOpsPerSec, ratio: hotResult.ratio },
      { figure: `  latency p50 / p99 / p999`, text: fmtLat(hotResult.serviceLatencyUs), baselineText: fmtLat(hotResult.baselineLatencyUs) },
      { figure: `set, ${distinctCount / 1000}k distinct keys`, value: distinctResult.serviceOpsPerSec, unit: 'ops/s', baseline: distinctResult.baselineOpsPerSec, ratio: distinctResult.ratio },
      { figure: `  latency p50 / p99 / p999`, text: fmtLat(distinctResult.serviceLatencyUs), baselineText: fmtLat(distinctResult.baselineLatencyUs) },
      { figure: `  per CPU-second (hot / distinct)`, text: `${hotResult.cpuRatio}x / ${distinctResult.cpuRatio}x`, baselineText: 'ops per process CPU-s, ratio' },
      { figure: `  set() call alone (mean, hot / distinct)`, text: `${hotResult.serviceLatencyUs.mean} / ${distinctResult.serviceLatencyUs.mean} µs`, baselineText: `${hotResult.baselineLatencyUs.mean} / ${distinctResult.baselineLatencyUs.mean} µs` },
      { figure: `  rows flushed meanwhile (hot / distinct)`, text: `${hotResult.rowsFlushedDuringRun} / ${distinctResult.rowsFlushedDuringRun}`, baselineText: `of ${hotResult.writes} / ${distinctResult.writes} writes` },
      { figure: `  event-loop delay p99 (hot / distinct)`, text: `${hotResult.eventLoopDelayWhileSetting.p99Ms} / ${distinctResult.eventLoopDelayWhileSetting.p99Ms} ms` },
    ],
    checks: [
      check('set.hot.ratio', `set ${HOT_KEYS / 1000}k hot keys vs Map.set+stringify`, hotResult.ratio, '>=', 0.5, 'x'),
      check('set.distinct.ratio', `set ${distinctCount / 1000}k distinct keys vs Map.set+stringify`, distinctResult.ratio, '>=', 0.5, 'x'),
      check('set.p99', 'set p99 latency, flusher running', p99, '<=', 50, 'µs'),
    ],
  };
}

function fmtLat(l) {
  return `${l.p50} / ${l.p99} / ${l.p999} µs`;
}
