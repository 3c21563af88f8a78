import fc from 'fast-check';
import {
  WriteBackError,
  WriteBackFlushTimeoutError,
  WriteBackOverloadedError,
  WriteBackWriteThroughError,
  type FlushReport,
} from '../../src/write-back/index.js';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { canonical, chaosLogger } from './chaos.js';
import { connectRetrying, databaseUrl, freshSchema } from './database.js';
import { TcpProxy } from './tcp-proxy.js';
import { sleep } from './wait.js';
import { startWriteBack, type WriteBackTestApp } from './write-back-app.js';

/**
 * A model-checked history: random interleavings of set / delete / get / flush against the service (through
 * the fault-injection proxy), with connections cut, Postgres made unreachable and restored, and latency added
 * between operations, while the background flusher runs, and graceful restarts of the service (whose drain
 * must leave the table equal to the model). The reference model is a Map of each key's latest
 * accepted value. Checked: every get returns what the model holds (read-your-writes; a get may fail only
 * when it has to read Postgres and Postgres is unreachable), and after the proxy is restored and a final flush,
 * the table equals the model exactly, with no dead letter.
 *
 * Reproduce a failure with the seed and path it prints:
 *   WRITE_BACK_MODEL_SEED=<seed> WRITE_BACK_MODEL_PATH=<path> npm run test:chaos -- test/chaos/model.chaos.ts
 * (the operations and configuration replay exactly; the flusher's timing is real time, so a timing-dependent
 * failure may need a few runs to show again).
 */

export const KEYS = ['a', 'b', 'c', 'd', 'e'] as const;
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type Op =
  | { t: 'set'; key: string; value: Json; through: boolean }
  | { t: 'delete'; key: string; through: boolean }
  | { t: 'get'; key: string }
  /** A get started, then a write to the same key before it returns: the get may see either. */
  | { t: 'race'; key: string; value: Json | undefined }
  | { t: 'flush' }
  | { t: 'flushInBackground' }
  | { t: 'cut' }
  | { t: 'outage' }
  | { t: 'restore' }
  | { t: 'latency'; ms: number }
  | { t: 'tick'; ms: number }
  /** Graceful shutdown (the drain must flush everything; the proxy is restored first) and a new instance. */
  | { t: 'restart' };

export interface RunConfig {
  autoFlush: boolean;
  flushIntervalMs: number;
  batchSize: number;
  flushConcurrency: number;
  /** Small values make `set` of a new key fail with WriteBackOverloadedError (backpressure reject). */
  maxDirtyEntries: number;
}

const keyArb = fc.constantFrom(...KEYS);
const jsonArb: fc.Arbitrary<Json> = fc.oneof(
  fc.integer({ min: -5, max: 1000 }),
  fc.constantFrom<Json>(null, true, '', 'x'),
  fc.string({ maxLength: 6 }).filter((s) => !/[\u0000\ud800-\udfff]/.test(s)),
  fc.record({ v: fc.integer({ min: 0, max: 99 }), s: fc.constantFrom('p', 'q') }),
  fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 3 }),
);

/** Write-through on about one write in six. */
const rarely = fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) });

export const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 30, arbitrary: fc.record({ t: fc.constant('set' as const), key: keyArb, value: jsonArb, through: rarely }) },
  { weight: 10, arbitrary: fc.record({ t: fc.constant('delete' as const), key: keyArb, through: rarely }) },
  { weight: 25, arbitrary: fc.record({ t: fc.constant('get' as const), key: keyArb }) },
  { weight: 5, arbitrary: fc.record({ t: fc.constant('race' as const), key: keyArb, value: fc.option(jsonArb, { nil: undefined }) }) },
  { weight: 8, arbitrary: fc.constant({ t: 'flush' as const }) },
  { weight: 5, arbitrary: fc.constant({ t: 'flushInBackground' as const }) },
  { weight: 5, arbitrary: fc.constant({ t: 'cut' as const }) },
  { weight: 3, arbitrary: fc.constant({ t: 'outage' as const }) },
  { weight: 6, arbitrary: fc.constant({ t: 'restore' as const }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('latency' as const), ms: fc.integer({ min: 1, max: 15 }) }) },
  { weight: 6, arbitrary: fc.record({ t: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 30 }) }) },
  { weight: 2, arbitrary: fc.constant({ t: 'restart' as const }) },
);

export const configArb: fc.Arbitrary<RunConfig> = fc.record({
  autoFlush: fc.boolean(),
  flushIntervalMs: fc.integer({ min: 5, max: 40 }),
  batchSize: fc.integer({ min: 1, max: 4 }),
  flushConcurrency: fc.integer({ min: 1, max: 3 }),
  maxDirtyEntries: fc.constantFrom(3, 1000),
});

class ModelViolation extends Error {}

function fail(message: string): never {
  throw new ModelViolation(message);
}

const sortedModel = (model: Map<string, Json>) => Object.fromEntries([...model.entries()].sort(([a], [b]) => a.localeCompare(b)));

/** The table's rows (key -> value), read directly; fails the history if there is any dead letter. */
async function tableSnapshot(schema: string): Promise<Map<string, unknown>> {
  const sql = await connectRetrying(schema);
  try {
    const { rows } = await sql.query('SELECT key, value FROM write_back_entries ORDER BY key');
    const letters = await sql.query('SELECT count(*)::int AS n FROM write_back_dead_letters');
    if (letters.rows[0].n !== 0) fail(`${letters.rows[0].n} dead letters`);
    return new Map(rows.map((r) => [r.key as string, r.value]));
  } finally {
    await sql.end();
  }
}

const show = (value: unknown) => (value === undefined ? 'undefined' : JSON.stringify(value));
const same = (a: unknown, b: unknown) => JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));

/** Runs one history against a fresh app (fresh schema) behind `proxy`; throws on the first violation. */
export async function runHistory(proxy: TcpProxy, config: RunConfig, ops: readonly Op[]): Promise<void> {
  proxy.restore();
  const schema = freshSchema();
  const start = () =>
    startWriteBack(
      {
        schema,
        autoFlush: config.autoFlush,
        flushIntervalMs: config.flushIntervalMs,
        batchSize: config.batchSize,
        flushConcurrency: config.flushConcurrency,
        maxDirtyEntries: config.maxDirtyEntries,
        backpressure: 'reject',
        retryBaseDelayMs: 5,
        retryMaxDelayMs: 40,
        circuitBreakerThreshold: 2,
        statementTimeoutMs: 5000,
        shutdownTimeoutMs: 5000,
        // The model is one instance's: reads served from memory through an outage. With other instances an outage
        // also takes the listen connection and clean copies are then not served (test/e2e/replicas.e2e.spec.ts).
        singleInstance: true,
      },
      { proxy, logger: chaosLogger() },
    );
  let t: WriteBackTestApp = await start();
  let service = t.service;
  const model = new Map<string, Json>();
  const background: Promise<unknown>[] = [];
  // After a cut, the pool may still hand out a connection whose socket is already gone: a read that has to
  // go to Postgres may fail until one round trip has succeeded again.
  let poolSuspect = false;
  const unreachable = () => proxy.currentMode === 'refuse' || poolSuspect;
  // Keys this instance has written or read: their latest value is in its memory (a fresh instance has none).
  const known = new Set<string>();

  const write = async (key: string, value: Json | undefined, through: boolean, step: string) => {
    try {
      if (value === undefined) await service.delete(key, { writeThrough: through });
      else await service.set(key, value, { writeThrough: through });
      // A write-through that returned reached Postgres: the pool works again.
      if (through && proxy.currentMode === 'pass') poolSuspect = false;
    } catch (error) {
      if (error instanceof WriteBackOverloadedError) {
        // Rejected: nothing changed. Only a new key can be rejected, and only when the cache is full.
        if (service.stats().dirty < config.maxDirtyEntries) fail(`${step}: overloaded with ${service.stats().dirty} dirty`);
        return;
      }
      if (error instanceof WriteBackWriteThroughError && /stays queued/.test(error.message) && through) {
        // Postgres did not take it now, but the write is accepted and queued: the model has it.
        if (!unreachable()) fail(`${step}: write-through failed with Postgres reachable: ${error.message}`);
      } else {
        fail(`${step}: unexpected ${(error as Error).name}: ${(error as Error).message}`);
      }
    }
    known.add(key);
    if (value === undefined) model.delete(key);
    else model.set(key, value);
  };

  const checkGet = (step: string, key: string, got: PromiseSettledResult<unknown>, allowed: (Json | undefined)[]) => {
    if (got.status === 'rejected') {
      const error = got.reason as Error;
      // Only a miss reads Postgres: a key the model holds that this instance has written or read is in memory.
      const mayMiss = allowed.includes(undefined) || !known.has(key);
      if (error instanceof WriteBackError || !mayMiss || !unreachable()) {
        fail(`${step}: get("${key}") threw ${error.name}: ${error.message} (model: ${allowed.map(show).join(' or ')})`);
      }
      return;
    }
    if (!allowed.some((value) => same(got.value, value))) {
      fail(`${step}: get("${key}") returned ${show(got.value)}, model allows ${allowed.map(show).join(' or ')}`);
    }
  };

  /** A get; a successful one that had to load from Postgres proves the pool healthy again. */
  const get = async (key: string): Promise<PromiseSettledResult<unknown>> => {
    const loads = service.stats().loads;
    const [got] = await Promise.allSettled([service.get(key)]);
    if (got.status === 'fulfilled' && service.stats().loads > loads && proxy.currentMode === 'pass') poolSuspect = false;
    if (got.status === 'fulfilled') known.add(key);
    return got;
  };

  try {
    for (const [index, op] of ops.entries()) {
      const step = `op ${index} ${JSON.stringify(op)}`;
      switch (op.t) {
        case 'set':
          await write(op.key, op.value, op.through, step);
          break;
        case 'delete':
          await write(op.key, undefined, op.through, step);
          break;
        case 'get': {
          const got = await get(op.key);
          checkGet(step, op.key, got, [model.get(op.key)]);
          break;
        }
        case 'race': {
          const before = model.get(op.key);
          const reading = service.get(op.key);
          const writing = write(op.key, op.value, false, step);
          const [got] = await Promise.allSettled([reading, writing]);
          checkGet(step, op.key, got, [before, model.get(op.key)]);
          // Whatever the racing get read, memory now holds the write.
          const after = await get(op.key);
          checkGet(`${step} (read after)`, op.key, after, [model.get(op.key)]);
          break;
        }
        case 'flush': {
          const reachable = proxy.currentMode === 'pass';
          let report: FlushReport | undefined;
          try {
            report = await service.flush({ timeoutMs: reachable ? 5000 : 100 });
          } catch (error) {
            if (!(error instanceof WriteBackFlushTimeoutError)) fail(`${step}: flush threw ${(error as Error).message}`);
            if (reachable) fail(`${step}: flush timed out with Postgres reachable: ${(error as Error).message}`);
          }
          if (report !== undefined) {
            if (report.deadLettered !== 0) fail(`${step}: flush dead-lettered ${report.deadLettered}`);
            if (report.committed !== report.requested) fail(`${step}: flush committed ${report.committed} of ${report.requested}`);
            // Through an outage a flush can still succeed: its entries were committed before the outage began
            // (a batch whose answer was already read when the connections were cut). The final check sees them.
            if (reachable && report.requested > 0) poolSuspect = false;
          }
          break;
        }
        case 'flushInBackground':
          background.push(service.flush({ timeoutMs: 3000 }).catch((error: unknown) => error));
          break;
        case 'cut':
          proxy.cut();
          poolSuspect = true;
          break;
        case 'outage':
          proxy.outage();
          poolSuspect = true;
          break;
        case 'restore':
          proxy.restore();
          break;
        case 'latency':
          proxy.setLatency(op.ms);
          break;
        case 'tick':
          await sleep(op.ms);
          break;
        case 'restart': {
          proxy.restore();
          await Promise.allSettled(background.splice(0));
          await t.close();
          const rows = await tableSnapshot(schema);
          // A graceful shutdown with Postgres reachable drains every write: the table is the model.
          if (!same(Object.fromEntries(rows), sortedModel(model))) {
            fail(`${step}: after the shutdown drain the table ${show(Object.fromEntries(rows))} != model ${show(sortedModel(model))}`);
          }
          t = await start();
          service = t.service;
          poolSuspect = false;
          known.clear();
          break;
        }
      }
    }

    // The end of the history: Postgres is back, everything must flush, and the table must equal the model.
    proxy.restore();
    const outcomes = await Promise.all(background);
    for (const outcome of outcomes) {
      if (outcome instanceof Error && !(outcome instanceof WriteBackFlushTimeoutError)) fail(`background flush threw ${outcome.message}`);
    }
    let final: FlushReport;
    try {
      final = await service.flush({ timeoutMs: 10_000 });
    } catch (error) {
      fail(`final flush failed with Postgres reachable: ${(error as Error).message}; stats ${JSON.stringify(service.stats())}`);
    }
    if (final.deadLettered !== 0) fail(`final flush dead-lettered ${final.deadLettered}`);
    const stats = service.stats();
    if (stats.dirty !== 0 || stats.deadLettered !== 0) fail(`after the final flush: dirty ${stats.dirty}, dead-lettered ${stats.deadLettered}`);
    const table = await tableSnapshot(schema);
    const expected = sortedModel(model);
    const actual = Object.fromEntries(table);
    if (!same(actual, expected)) fail(`table ${show(actual)} != model ${show(expected)}`);
    // Memory agrees with the table.
    for (const key of KEYS) {
      const got = await get(key);
      checkGet(`final get`, key, got, [model.get(key)]);
    }
  } finally {
    await Promise.allSettled(background);
    await t.close();
  }
}

export interface ModelCheckOptions {
  numRuns: number;
  maxOps: number;
  /** Stop generating new runs (and shrinking) after this long; a failure found is still reported. */
  timeLimitMs: number;
}

/**
 * Runs the property with fast-check. The seed, path, run count and time limit come from WRITE_BACK_MODEL_SEED,
 * WRITE_BACK_MODEL_PATH, WRITE_BACK_MODEL_RUNS and WRITE_BACK_MODEL_TIME_LIMIT_MS when set. On failure, throws fast-check's report (the shrunk
 * counterexample) preceded by the line to reproduce it.
 */
export async function checkModel(proxy: TcpProxy, options: ModelCheckOptions, label: string): Promise<{ runs: number; seed: number; ms: number }> {
  const seed = process.env.WRITE_BACK_MODEL_SEED ? Number(process.env.WRITE_BACK_MODEL_SEED) : Date.now() ^ (Math.random() * 0x7fffffff);
  const path = process.env.WRITE_BACK_MODEL_PATH || undefined;
  const numRuns = process.env.WRITE_BACK_MODEL_RUNS ? Number(process.env.WRITE_BACK_MODEL_RUNS) : options.numRuns;
  const started = Date.now();
  const property = fc.asyncProperty(configArb, fc.array(opArb, { minLength: 1, maxLength: options.maxOps }), (config, ops) =>
    runHistory(proxy, config, ops),
  );
  const details = await fc.check(property, {
    seed,
    path,
    numRuns: path === undefined ? numRuns : 1,
    interruptAfterTimeLimit: Number(process.env.WRITE_BACK_MODEL_TIME_LIMIT_MS ?? options.timeLimitMs),
    markInterruptAsFailure: false,
    endOnFailure: false,
  });
  const ms = Date.now() - started;
  if (details.failed) {
    const reproduce =
      `[model ${label}] FAILED. Reproduce: WRITE_BACK_MODEL_SEED=${details.seed} ` +
      `WRITE_BACK_MODEL_PATH=${details.counterexamplePath ?? ''} (same test command)`;
    process.stdout.write(`${reproduce}\n`);
    const cause = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    throw new Error(`${reproduce}\nViolation: ${cause}\n${fc.defaultReportMessage(details)}`);
  }
  process.stdout.write(`[model ${label}] ${details.numRuns} histories passed in ${ms} ms (seed ${details.seed}${details.interrupted ? ', stopped at the time limit' : ''})\n`);
  return { runs: details.numRuns, seed: details.seed, ms };
}

/**
 * Registers the model-check spec: a fault-injection proxy in front of the run's database for the suite, and one
 * test running `checkModel` with `options` (the e2e suite runs a small check, the chaos suite a large one).
 */
export function describeModelCheck(title: string, label: string, options: ModelCheckOptions, testTimeoutMs: number): void {
  describe(title, () => {
    let proxy: TcpProxy;
    beforeAll(async () => {
      proxy = await TcpProxy.start(databaseUrl());
    });
    afterAll(async () => {
      await proxy?.close();
    });

    it('every get reads the latest accepted write, and the table equals the model after the final flush', async () => {
      await checkModel(proxy, options, label);
    }, testTimeoutMs);
  });
}
