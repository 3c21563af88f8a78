import type { LogLevel } from '@nestjs/common';
import { WriteBackOverloadedError, type WriteBackService } from '../../src/write-back/index.js';
import { connectRetrying } from './database.js';
import { sleep } from './wait.js';
import type { WriteBackTestApp, WriteBackTestSettings } from './write-back-app.js';

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Quiet by default (an outage logs a warning per failed flush); WRITE_BACK_CHAOS_LOG=1 shows errors and warnings. */
export const chaosLogger = (): LogLevel[] | false => (process.env.WRITE_BACK_CHAOS_LOG === '1' ? ['error', 'warn'] : false);

/**
 * How a chaos scenario boots the module (`startWriteBack(options, chaosApp())`): through a fault-injection proxy
 * of its own, serving the health probes over HTTP. Checks read the table directly, not through the proxy.
 */
export const chaosApp = (): WriteBackTestSettings & { proxy: true } => ({ proxy: true, http: true, logger: chaosLogger() });

export interface LoadOptions {
  writers: number;
  /** Keys each writer cycles through (its own: `w<writer>:<i>`). */
  keysPerWriter: number;
  /** Upper bound of operations per writer. */
  maxOpsPerWriter: number;
  /** Hard bound of the run, ms. */
  maxDurationMs: number;
  /** Fraction of operations that are deletes. @default 0.05 */
  deleteRatio?: number;
  /** Client think time between operations, ms (0: just yield to the event loop). @default 0 */
  thinkMs?: number;
  /** Client backoff after an overloaded error, ms. @default 5 */
  rejectBackoffMs?: number;
  /** The key and value of operation `n` of `writer`; a value of undefined is a delete. */
  op?: (writer: number, n: number) => { key: string; value: unknown };
  /** Called right after each acknowledgement, in the same tick (e.g. to check a bound). */
  afterAck?: () => void;
}

export interface Acked {
  /** Latest acknowledged value; undefined for a delete. */
  value: unknown;
  n: number;
}

/**
 * Many concurrent writers over the service, each owning its keys and writing them one operation at a time,
 * so the latest acknowledged operation of a key is well defined. Counts attempts, acknowledgements and
 * rejections (`WriteBackOverloadedError`); any other error is kept in `unexpected`.
 */
export class Load {
  attempted = 0;
  acknowledged = 0;
  rejected = 0;
  readonly acked = new Map<string, Acked>();
  /** The first 200 rejections. */
  readonly rejections: WriteBackOverloadedError[] = [];
  readonly unexpected: unknown[] = [];
  /** Longest time one call took to be acknowledged, and to be rejected, ms. */
  maxAckMs = 0;
  maxRejectMs = 0;
  minRejectMs = Number.POSITIVE_INFINITY;
  /** Calls in progress right now (in `block` mode: waiting for room). */
  pending = 0;
  private stopped = false;
  private done: Promise<void> | undefined;
  private readonly opFor: (writer: number, n: number) => { key: string; value: unknown };

  constructor(
    private readonly service: WriteBackService,
    private readonly options: LoadOptions,
  ) {
    const deleteRatio = options.deleteRatio ?? 0.05;
    this.opFor =
      options.op ??
      ((writer, n) => {
        const key = `w${writer}:${n % options.keysPerWriter}`;
        // Deterministic mix: a delete every 1/deleteRatio operations, offset per writer.
        const isDelete = deleteRatio > 0 && (n * 7919 + writer) % Math.round(1 / deleteRatio) === 0;
        return { key, value: isDelete ? undefined : { w: writer, n, pad: 'x'.repeat(64) } };
      });
  }

  start(): this {
    const deadline = Date.now() + this.options.maxDurationMs;
    const writer = async (id: number) => {
      for (let n = 1; n <= this.options.maxOpsPerWriter && !this.stopped && Date.now() < deadline; n++) {
        const { key, value } = this.opFor(id, n);
        this.attempted++;
        this.pending++;
        const started = Date.now();
        let rejected = false;
        try {
          if (value === undefined) await this.service.delete(key);
          else await this.service.set(key, value);
          this.acknowledged++;
          this.acked.set(key, { value, n });
          this.options.afterAck?.();
          this.maxAckMs = Math.max(this.maxAckMs, Date.now() - started);
        } catch (error) {
          if (!(error instanceof WriteBackOverloadedError)) throw error;
          rejected = true;
          this.rejected++;
          this.maxRejectMs = Math.max(this.maxRejectMs, Date.now() - started);
          this.minRejectMs = Math.min(this.minRejectMs, Date.now() - started);
          if (this.rejections.length < 200) this.rejections.push(error);
        } finally {
          this.pending--;
        }
        if (rejected) await sleep(this.options.rejectBackoffMs ?? 5);
        else if (this.options.thinkMs) await sleep(this.options.thinkMs);
        else await yieldToLoop();
      }
    };
    // Any error other than backpressure is kept and ends that writer: the scenario asserts there is none.
    const run = (id: number) => writer(id).catch((error: unknown) => void this.unexpected.push(error));
    this.done = Promise.all(Array.from({ length: this.options.writers }, (_, id) => run(id))).then(() => undefined);
    return this;
  }

  /** Stops the writers and waits for the calls in progress to end. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }

  /** Resolves when the writers finish by themselves (their op or time bound). */
  finished(): Promise<void> {
    return this.done ?? Promise.resolve();
  }
}

export interface Sample {
  at: number;
  dirty: number;
  flushLagMs: number;
  flushedEntries: number;
  circuit: string;
  alive: boolean;
}

/** Samples stats and liveness every `intervalMs` (and on demand), keeping the extremes. */
export class Sampler {
  maxDirty = 0;
  maxFlushLagMs = 0;
  livenessDown = 0;
  readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly t: Pick<WriteBackTestApp, 'service' | 'health'>) {}

  start(intervalMs = 20): this {
    this.timer = setInterval(() => this.sample(), intervalMs);
    return this;
  }

  sample(): Sample {
    const stats = this.t.service.stats();
    const alive = this.t.health.liveness().healthy;
    const sample: Sample = {
      at: Date.now(),
      dirty: stats.dirty,
      flushLagMs: stats.flushLagMs,
      flushedEntries: stats.flushedEntries,
      circuit: stats.circuit,
      alive,
    };
    this.maxDirty = Math.max(this.maxDirty, sample.dirty);
    this.maxFlushLagMs = Math.max(this.maxFlushLagMs, sample.flushLagMs);
    if (!alive) this.livenessDown++;
    this.samples.push(sample);
    return sample;
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
  }

  /** Rows flushed per second between two instants (from the samples). */
  flushRate(from: number, to: number): number {
    const inside = this.samples.filter((s) => s.at >= from && s.at <= to);
    if (inside.length < 2) return 0;
    const first = inside[0];
    const last = inside[inside.length - 1];
    return ((last.flushedEntries - first.flushedEntries) * 1000) / Math.max(1, last.at - first.at);
  }
}

export interface Verification {
  /** Acknowledged keys whose latest acknowledged value is neither in the table nor dead-lettered. */
  lost: number;
  lostKeys: string[];
  rows: number;
}

/**
 * Compares every acknowledged key's latest acknowledged value with the table (read directly, not through the
 * proxy): a delete must have removed the row, a set must have left exactly its `n`. Keys in `deadLettered`
 * (key -> the n of the dead-lettered value) count as kept if that is their latest acknowledged value.
 */
export async function verifyAcked(
  schema: string,
  acked: ReadonlyMap<string, Acked>,
  deadLettered: ReadonlyMap<string, number> = new Map(),
): Promise<Verification> {
  const sql = await connectRetrying(schema);
  try {
    const { rows } = await sql.query('SELECT key, value FROM write_back_entries');
    const table = new Map<string, unknown>(rows.map((r) => [r.key as string, r.value]));
    const lostKeys: string[] = [];
    for (const [key, { value, n }] of acked) {
      const stored = table.get(key);
      const ok =
        value === undefined
          ? stored === undefined
          : stored !== undefined && JSON.stringify(canonical(stored)) === JSON.stringify(canonical(value));
      if (!ok && deadLettered.get(key) !== n) lostKeys.push(key);
    }
    return { lost: lostKeys.length, lostKeys: lostKeys.slice(0, 20), rows: table.size };
  } finally {
    await sql.end();
  }
}

/** JSON with object keys sorted (jsonb does not keep key order). */
export function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value as object)
        .sort()
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

export interface ScenarioSummary {
  attempted: number;
  acknowledged: number;
  rejected: number;
  lost: number;
  deadLettered: number;
  maxFlushLagMs: number;
}

/** The figures `report` prints, from what a scenario's load, verification and sampler measured. */
export function summarize(load: Load, verification: Verification, sampler: Sampler, deadLettered: number): ScenarioSummary {
  return {
    attempted: load.attempted,
    acknowledged: load.acknowledged,
    rejected: load.rejected,
    lost: verification.lost,
    deadLettered,
    maxFlushLagMs: sampler.maxFlushLagMs,
  };
}

/** The one line per scenario the issue asks for. */
export function report(name: string, summary: ScenarioSummary, details?: string): string {
  const line =
    `[chaos ${name}] attempted ${summary.attempted}, acknowledged ${summary.acknowledged}, ` +
    `rejected ${summary.rejected}, lost ${summary.lost}, dead-lettered ${summary.deadLettered}, ` +
    `max flush lag ${Math.round(summary.maxFlushLagMs)} ms`;
  // Straight to the process output, so the line is printed whatever the reporter does with console output.
  process.stdout.write(`${line}\n`);
  if (details) process.stdout.write(`[chaos ${name}] ${details}\n`);
  return line;
}
