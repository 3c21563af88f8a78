// Scenario 4: durability 'wal-sync' with 256 concurrent writers, against a raw group-commit append
// (write + fdatasync of batched buffers) on the same file system, in the same process.
import { existsSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VALUES, VALUE_JSON, VALUE_POOL_SIZE, check, log, makeKeys, median, msSummary, nsHistogram, performance, round, yieldLoop } from '../lib/util.mjs';
import { startBackgroundIngest } from '../lib/db.mjs';
import { distDir, distUrl, noByteBounds, resolveWriteBackOptions, startService, WriteBackConfigError } from '../lib/service.mjs';

const WRITERS = 256;
const KEYS = 100_000;
const POOL_MASK = VALUE_POOL_SIZE - 1;
const keys = makeKeys(KEYS, 'wal:');

/** `append(i)` resolves once append i is durable; WRITERS loops for `ms` after a 300 ms warm-up. */
async function drive(append, ms) {
  const hist = nsHistogram();
  let seq = 0;
  let count = 0;
  let stopped = false;
  const start = performance.now();
  const measureFrom = start + 300;
  const stopAt = measureFrom + ms;
  const writer = async () => {
    while (!stopped) {
      const t0 = performance.now();
      await append(seq++);
      const t1 = performance.now();
      if (t1 >= stopAt) stopped = true;
      else if (t0 >= measureFrom) {
        count++;
        hist.record(Math.max(1, Math.round((t1 - t0) * 1e6)));
      }
    }
  };
  await Promise.all(Array.from({ length: WRITERS }, writer));
  return { acksPerSec: Math.round((count / ms) * 1000), acks: count, latencyMs: msSummary(hist) };
}

/**
 * Raw group commit: each append turns key + JSON into bytes and queues them; one loop writes each batch with one
 * write and one fdatasync, yielding with setImmediate between groups. No framing, checksum or retention.
 */
async function rawGroupCommit(dir, ms) {
  const handle = await open(join(dir, 'raw.log'), 'w');
  let batch = [];
  let waiting;
  let running = false;
  let position = 0;
  let syncs = 0;
  const loop = async () => {
    await yieldLoop();
    while (batch.length > 0) {
      const buffers = batch;
      const done = waiting;
      batch = [];
      waiting = undefined;
      const data = Buffer.concat(buffers);
      await handle.write(data, 0, data.length, position);
      position += data.length;
      await handle.datasync();
      syncs++;
      done.resolve();
      await yieldLoop();
    }
    running = false;
  };
  const append = (i) => {
    batch.push(Buffer.from(keys[(i * 7919) % KEYS] + VALUE_JSON[i & POOL_MASK]));
    if (waiting === undefined) {
      let resolve;
      const promise = new Promise((r) => (resolve = r));
      waiting = { promise, resolve };
    }
    if (!running) {
      running = true;
      void loop();
    }
    return waiting.promise;
  };
  const result = await drive(append, ms);
  while (running) await yieldLoop();
  await handle.close();
  return { ...result, syncs, acksPerSync: round(result.acks / Math.max(1, syncs), 1) };
}

/**
 * The same raw group commit while this process also upserts 1,000-row batches into Postgres on 2 connections, as
 * the service's flusher does: what the disk (shared with Postgres's own WAL) and the event loop (shared with the pg
 * client) leave for group commit. Informational: the target compares against the idle-disk figure.
 */
async function rawGroupCommitWhileIngesting(url, dir, ms) {
  const ingest = await startBackgroundIngest(url, `bench_wal_ingest_${process.pid}`, { values: VALUE_JSON });
  const started = performance.now();
  try {
    return await rawGroupCommit(dir, ms);
  } finally {
    const { rows } = await ingest.stop();
    log(`wal: background ingest ${Math.round((rows / (performance.now() - started)) * 1000)} rows/s`);
  }
}

/** The library's WriteAheadLog on its own (no cache, no Postgres), when the build has it: informational. */
async function walComponent(dir, ms) {
  const { WriteAheadLog } = await import(distUrl('write-back/wal/index.js'));
  // Resolved options, as the module hands them over (builds since the one validation layer no longer default them).
  const quiet = { log() {}, warn() {}, error: (message) => log(`wal component: ${message}`) };
  const { wal } = await WriteAheadLog.open({
    dir: join(dir, 'wal-component'),
    mode: 'wal-sync',
    syncIntervalMs: 100,
    segmentBytes: 16 * 1024 * 1024,
    corruption: 'fail',
    logger: quiet,
  });
  let version = Date.now() * 1000;
  const result = await drive((i) => wal.append({ key: keys[(i * 7919) % KEYS], json: VALUE_JSON[i & POOL_MASK], version: version++, rank: 1 }), ms);
  const { syncs } = wal.stats();
  await wal.close();
  return { ...result, syncs };
}

async function servicePass(url, dir, ms) {
  const svc = await startService(
    url,
    { durability: 'wal-sync', walDir: join(dir, 'service-wal'), autoFlush: true, maxDirtyEntries: 2 * KEYS, ...noByteBounds },
    'wal',
  );
  try {
    const result = await drive((i) => svc.service.set(keys[(i * 7919) % KEYS], VALUES[i & POOL_MASK]), ms);
    const stats = svc.service.stats();
    return { ...result, walSyncs: stats.walSyncs, walBytes: stats.walBytes, flushedEntries: stats.flushedEntries, errors: svc.logger.errors };
  } finally {
    await svc.close();
  }
}

function walSyncAccepted(dir) {
  try {
    resolveWriteBackOptions({ url: 'postgres://localhost/x', durability: 'wal-sync', walDir: dir });
    return { accepted: true };
  } catch (error) {
    if (error instanceof WriteBackConfigError && error.option === 'durability') return { accepted: false, message: error.message };
    throw error;
  }
}

export async function run(ctx) {
  const { quick, url } = ctx;
  const ms = quick ? 1500 : 4000;
  const passes = quick ? 1 : 2;
  const dir = await mkdtemp(join(tmpdir(), 'write-back-bench-wal-'));
  const integration = walSyncAccepted(dir);
  const hasComponent = existsSync(join(distDir, 'write-back/wal/index.js'));
  const raw = [];
  const rawIngesting = [];
  const component = [];
  const service = [];
  try {
    for (let p = 0; p < passes; p++) {
      log(`wal: pass ${p + 1}: raw group commit, ${WRITERS} writers, ${ms} ms`);
      raw.push(await rawGroupCommit(dir, ms));
      log(`wal: raw ${raw.at(-1).acksPerSec} acks/s p99 ${raw.at(-1).latencyMs.p99} ms`);
      rawIngesting.push(await rawGroupCommitWhileIngesting(url, dir, ms));
      log(`wal: raw while Postgres ingests ${rawIngesting.at(-1).acksPerSec} acks/s p99 ${rawIngesting.at(-1).latencyMs.p99} ms`);
      if (hasComponent) {
        component.push(await walComponent(dir, ms));
        log(`wal: WriteAheadLog alone ${component.at(-1).acksPerSec} acks/s p99 ${component.at(-1).latencyMs.p99} ms`);
      }
      if (integration.accepted) {
        service.push(await servicePass(url, dir, ms));
        log(`wal: service.set wal-sync ${service.at(-1).acksPerSec} acks/s p99 ${service.at(-1).latencyMs.p99} ms`);
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const rawAcks = median(raw.map((r) => r.acksPerSec));
  const rows = [
    { figure: `raw group commit, ${WRITERS} writers`, text: `${Math.round(rawAcks).toLocaleString('en-US')} acks/s`, baselineText: `p50 ${round(median(raw.map((r) => r.latencyMs.p50)))} / p99 ${round(median(raw.map((r) => r.latencyMs.p99)))} ms` },
  ];
  const ingestingAcks = median(rawIngesting.map((r) => r.acksPerSec));
  rows.push({
    figure: '  raw while Postgres ingests (info.)',
    text: `${Math.round(ingestingAcks).toLocaleString('en-US')} acks/s`,
    baselineText: `p50 ${round(median(rawIngesting.map((r) => r.latencyMs.p50)))} / p99 ${round(median(rawIngesting.map((r) => r.latencyMs.p99)))} ms`,
  });
  if (component.length) {
    const acks = median(component.map((r) => r.acksPerSec));
    rows.push({ figure: '  WriteAheadLog alone (informational)', value: Math.round(acks), unit: 'acks/s', baseline: Math.round(rawAcks), ratio: round(acks / rawAcks, 3) });
  }
  const result = {
    title: "durability 'wal-sync' (group commit)",
    metrics: {
      writers: WRITERS,
      secondsPerPass: ms / 1000,
      passes,
      method: `${WRITERS} concurrent loops of await append; acks counted after a 300 ms warm-up; directory under ${tmpdir()} (same disk as the project).`,
      baselineRawGroupCommit: raw,
      rawGroupCommitWhileIngesting: rawIngesting,
      walComponent: component,
      service,
      walSyncAccepted: integration,
    },
    rows,
    checks: [],
  };
  if (!integration.accepted) {
    result.status = 'skipped';
    result.reason = 'WAL not integrated';
    result.notes = [`durability "wal-sync" is rejected by the options: ${integration.message}`];
    result.checks = [
      { ...check('wal.ratio', "wal-sync set() acks vs raw group commit", null, '>=', 0.65, 'x'), skipped: true },
      { ...check('wal.p99', 'wal-sync set() p99 ack latency', null, '<=', 5, 'ms'), skipped: true },
    ];
    return result;
  }
  const acks = median(service.map((r) => r.acksPerSec));
  const p99 = median(service.map((r) => r.latencyMs.p99));
  rows.push({ figure: "service.set, durability 'wal-sync'", value: Math.round(acks), unit: 'acks/s', baseline: Math.round(rawAcks), ratio: round(acks / rawAcks, 3) });
  rows.push({ figure: '  ack latency p50 / p99', text: `${round(median(service.map((r) => r.latencyMs.p50)))} / ${round(p99)} ms` });
  rows.push({ figure: '  vs raw while Postgres ingests (info.)', value: Math.round(acks), unit: 'acks/s', baseline: Math.round(ingestingAcks), ratio: round(acks / ingestingAcks, 3) });
  result.checks = [
    check('wal.ratio', 'wal-sync set() acks vs raw group commit', acks / rawAcks, '>=', 0.65, 'x'),
    check('wal.p99', 'wal-sync set() p99 ack latency', p99, '<=', 5, 'ms'),
  ];
  return result;
}
