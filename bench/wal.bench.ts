/*
 * wal-sync group commit against a raw group-commit baseline, in one process on one file system.
 *
 * Run (Node 20 cannot execute TypeScript itself, so compile this file and the WAL it imports first):
 *   npx tsc bench/wal.bench.ts --ignoreConfig --module nodenext --target es2023 --types node --skipLibCheck \
 *     --rootDir . --outDir /tmp/wal-bench && node /tmp/wal-bench/bench/wal.bench.js
 *
 * Env: WAL_BENCH_WRITERS (256), WAL_BENCH_SECONDS (3 per pass), WAL_BENCH_PASSES (3, medians are reported),
 * WAL_BENCH_DIR (a directory on the file system to measure; default the OS temp dir).
 * Prints one JSON object with the medians of acks/s and p50/p99 ack latency of three runs, interleaved:
 *   io-ceiling  write + fdatasync of batches of one ready-made buffer (no per-append work at all);
 *   baseline    the same with each append turning its key and value into bytes (a raw group-commit log);
 *   wal-sync    WriteAheadLog.append (framing, CRC-32, retention bookkeeping), default (16 MiB, zero-filled) segments.
 * and the WAL's ratio to each.
 */
import { open, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WriteAheadLog } from '../src/write-back/wal/index.js';
import { WRITE_BACK_DEFAULTS } from '../src/write-back/write-back.options.js';

const WRITERS = Number(process.env.WAL_BENCH_WRITERS ?? 256);
const SECONDS = Number(process.env.WAL_BENCH_SECONDS ?? 3);
const PASSES = Number(process.env.WAL_BENCH_PASSES ?? 3);
const BASE_DIR = process.env.WAL_BENCH_DIR ?? tmpdir();
const WARMUP_MS = 300;
const KEYS = 100_000;

interface PassResult {
  acksPerSec: number;
  p50Ms: number;
  p99Ms: number;
  syncs: number;
}

/** A ~200-byte JSON value, as the service would hand it to the WAL. */
const VALUES = Array.from({ length: 64 }, (_, i) =>
  JSON.stringify({
    id: i,
    name: `user number ${i}`,
    email: `user${i}@example.com`,
    tags: ['alpha', 'beta', 'gamma'],
    balance: 1234.56 + i,
    note: 'x'.repeat(60),
  }),
);

/** The service hands the WAL key strings it already holds. */
const KEY_NAMES = Array.from({ length: KEYS }, (_, i) => `user:${i}`);

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Drives `append` from WRITERS concurrent loops for SECONDS and measures acks after a short warm-up.
 * `append(i)` must resolve once append number `i` is durable.
 */
async function drive(append: (i: number) => Promise<void>): Promise<Omit<PassResult, 'syncs'>> {
  const latencies = new Float64Array(4_000_000);
  let count = 0;
  let seq = 0;
  const start = performance.now();
  const measureFrom = start + WARMUP_MS;
  const stopAt = measureFrom + SECONDS * 1000;
  let stopped = false;
  const writer = async (): Promise<void> => {
    while (!stopped) {
      const t0 = performance.now();
      await append(seq++);
      const t1 = performance.now();
      if (t1 >= stopAt) stopped = true;
      else if (t0 >= measureFrom && count < latencies.length) latencies[count++] = t1 - t0;
    }
  };
  await Promise.all(Array.from({ length: WRITERS }, writer));
  const measured = latencies.subarray(0, count).sort();
  return {
    acksPerSec: Math.round(count / SECONDS),
    p50Ms: round(measured[Math.floor(count * 0.5)] ?? NaN),
    p99Ms: round(measured[Math.floor(count * 0.99)] ?? NaN),
  };
}

/**
 * A raw group-commit log: each append turns its key and value into bytes (what any log must do) and queues them;
 * one loop writes each batch with one write and makes it durable with one fdatasync. With `prebuilt`, writers hand
 * over one ready-made buffer instead: the pure I/O ceiling. No framing, checksums or retention bookkeeping.
 */
async function baselinePass(dir: string, prebuilt: boolean): Promise<PassResult> {
  const handle = await open(join(dir, 'baseline.log'), 'w');
  const ready = Buffer.from(`${KEY_NAMES[0]}${VALUES[0]}`);
  let batch: Buffer[] = [];
  let waiting: { promise: Promise<void>; resolve: () => void } | undefined;
  let running = false;
  let position = 0;
  let syncs = 0;
  const loop = async (): Promise<void> => {
    await yieldToEventLoop();
    while (batch.length > 0) {
      const buffers = batch;
      const done = waiting!;
      batch = [];
      waiting = undefined;
      const data = Buffer.concat(buffers);
      await handle.write(data, 0, data.length, position);
      position += data.length;
      await handle.datasync();
      syncs++;
      done.resolve();
      await yieldToEventLoop();
    }
    running = false;
  };
  const append = (i: number): Promise<void> => {
    batch.push(prebuilt ? ready : Buffer.from(KEY_NAMES[(i * 7919) % KEYS]! + VALUES[i % VALUES.length]!));
    if (waiting === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      waiting = { promise, resolve };
    }
    if (!running) {
      running = true;
      void loop();
    }
    return waiting.promise;
  };
  const result = await drive(append);
  while (running) await yieldToEventLoop();
  await handle.close();
  return { ...result, syncs };
}

async function walPass(dir: string): Promise<PassResult> {
  const { wal } = await WriteAheadLog.open({
    dir: join(dir, 'wal'),
    mode: 'wal-sync',
    syncIntervalMs: 100,
    segmentBytes: WRITE_BACK_DEFAULTS.walSegmentBytes,
    corruption: WRITE_BACK_DEFAULTS.walCorruption,
    logger: { log: () => undefined, warn: console.warn, error: console.error },
  });
  let version = Date.now() * 1000;
  const result = await drive((i) =>
    wal.append({ key: KEY_NAMES[(i * 7919) % KEYS]!, json: VALUES[i % VALUES.length]!, version: version++, rank: 1 }),
  );
  const { syncs } = wal.stats();
  await wal.close();
  return { ...result, syncs };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function summarize(passes: PassResult[]): PassResult {
  return {
    acksPerSec: median(passes.map((p) => p.acksPerSec)),
    p50Ms: median(passes.map((p) => p.p50Ms)),
    p99Ms: median(passes.map((p) => p.p99Ms)),
    syncs: median(passes.map((p) => p.syncs)),
  };
}

async function main(): Promise<void> {
  const runs: Record<string, { run: (dir: string) => Promise<PassResult>; passes: PassResult[] }> = {
    'io-ceiling': { run: (dir) => baselinePass(dir, true), passes: [] },
    baseline: { run: (dir) => baselinePass(dir, false), passes: [] },
    'wal-sync': { run: walPass, passes: [] },
  };
  const names = Object.keys(runs);
  for (let pass = 0; pass < PASSES; pass++) {
    // Rotate the order: the disk and the other tenants of the machine drift, and a run can slow the next one down.
    for (let i = 0; i < names.length; i++) {
      const name = names[(pass + i) % names.length]!;
      const dir = await mkdtemp(join(BASE_DIR, 'wal-bench-'));
      try {
        const result = await runs[name]!.run(dir);
        runs[name]!.passes.push(result);
        console.error(`pass ${pass + 1} ${name}: ${JSON.stringify(result)}`);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
  }
  const ceiling = summarize(runs['io-ceiling']!.passes);
  const baseline = summarize(runs.baseline!.passes);
  const wal = summarize(runs['wal-sync']!.passes);
  const ratio = (a: number, b: number): number => Math.round((a / b) * 1000) / 1000;
  console.log(
    JSON.stringify(
      {
        bench: 'wal-sync group commit',
        node: process.version,
        writers: WRITERS,
        secondsPerPass: SECONDS,
        passes: PASSES,
        ioCeiling: ceiling,
        baseline,
        wal,
        ratio: ratio(wal.acksPerSec, baseline.acksPerSec),
        ratioToIoCeiling: ratio(wal.acksPerSec, ceiling.acksPerSec),
        target: { ratio: 0.65, minAcksPerSec: 100_000, maxP99Ms: 5 },
      },
      null,
      2,
    ),
  );
}

await main();
