import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PRIORITY_RANK } from '../../src/write-back/cache/dirty-set.js';
import { HybridClock } from '../../src/write-back/cache/hybrid-clock.js';
import type { FlusherOptions } from '../../src/write-back/flush/flusher.js';
import type { DeadLetterFailure, FlushCompletion, FlushItem, FlushSink, FlushTimer } from '../../src/write-back/model/types.js';
import { WritePipeline } from '../../src/write-back/write-pipeline.js';
import { WriteBackFlushTimeoutError } from '../../src/write-back/write-back.errors.js';

const HIGH = PRIORITY_RANK.high;
const NORMAL = PRIORITY_RANK.normal;
const LOW = PRIORITY_RANK.low;

interface Row {
  json: string;
  version: number;
}

/**
 * An in-memory stand-in for the entries table: applies the same version guard as the SQL, writes a batch
 * atomically (all rows or none), and can be told to fail transiently (08006), to reject rows permanently (23514)
 * or to hang until released.
 */
class MemorySink implements FlushSink {
  readonly table = new Map<string, Row>();
  readonly deadLetters: { item: FlushItem; failure: DeadLetterFailure }[] = [];
  /** Every writeBatch call, in call order. */
  readonly calls: FlushItem[][] = [];
  /** Problems the real database would have raised or the contract forbids. */
  readonly violations: string[] = [];
  concurrent = 0;
  maxConcurrent = 0;
  /** Fail every batch with a connection error (transient). */
  down = false;
  /** Rows for which Postgres raises a check violation (permanent). */
  rejectWhen: (item: FlushItem) => boolean = () => false;
  /** Fail dead-letter inserts (transient). */
  deadLetterDown = false;
  private readonly inFlightKeys = new Set<string>();
  private holding = false;
  private gates: (() => void)[] = [];

  /** Writes wait until release(). */
  hold(): void {
    this.holding = true;
  }

  /** Lets the waiting writes go on; with `keepHolding`, later writes wait again. */
  release(keepHolding = false): void {
    this.holding = keepHolding;
    const gates = this.gates;
    this.gates = [];
    for (const open of gates) open();
  }

  /** Lets the oldest waiting write go on; the others keep waiting. */
  releaseFirst(): void {
    this.gates.shift()?.();
  }

  get waiting(): number {
    return this.gates.length;
  }

  async writeBatch(items: readonly FlushItem[]): Promise<void> {
    this.calls.push([...items]);
    const keys = items.map((item) => item.key);
    if (new Set(keys).size !== keys.length) this.violations.push(`one key twice in a batch: ${keys.join(',')}`);
    for (const key of keys) {
      if (this.inFlightKeys.has(key)) this.violations.push(`key ${key} written by two batches at once`);
    }
    for (const key of keys) this.inFlightKeys.add(key);
    this.concurrent++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
    try {
      await Promise.resolve();
      if (this.holding) await new Promise<void>((resolve) => this.gates.push(resolve));
      if (this.down) throw Object.assign(new Error('connection failure'), { code: '08006' });
      if (items.some((item) => this.rejectWhen(item))) {
        throw { code: '23514', message: 'new row violates check constraint' };
      }
      for (const item of items) this.apply(item);
    } finally {
      this.concurrent--;
      for (const key of keys) this.inFlightKeys.delete(key);
    }
  }

  async insertDeadLetter(item: FlushItem, failure: DeadLetterFailure): Promise<void> {
    await Promise.resolve();
    if (this.deadLetterDown) throw Object.assign(new Error('connection failure'), { code: '08006' });
    this.deadLetters.push({ item, failure });
  }

  /** `... ON CONFLICT DO UPDATE ... WHERE version < excluded.version` / `DELETE ... WHERE version < $v`. */
  private apply(item: FlushItem): void {
    const current = this.table.get(item.key);
    if (current !== undefined && current.version >= item.version) return;
    if (item.json === null) this.table.delete(item.key);
    else this.table.set(item.key, { json: item.json, version: item.version });
  }

  callsWith(key: string): FlushItem[][] {
    return this.calls.filter((batch) => batch.some((item) => item.key === key));
  }
}

/** The FlushTimer the module builds, on plain setTimeout (faked here). */
class TimeoutTimer implements FlushTimer {
  private handle: ReturnType<typeof setTimeout> | undefined;

  set(callback: () => void, delayMs: number): void {
    this.clear();
    this.handle = setTimeout(callback, delayMs);
  }

  clear(): void {
    if (this.handle !== undefined) clearTimeout(this.handle);
    this.handle = undefined;
  }
}

/** Completions as the pipeline reports them. */
class RecordingListener {
  readonly committed: { item: FlushItem; clean: boolean }[] = [];
  readonly deadLettered: { item: FlushItem; clean: boolean }[] = [];

  record({ item, outcome, clean }: FlushCompletion): void {
    (outcome === 'committed' ? this.committed : this.deadLettered).push({ item, clean });
  }
}

/** Versions 1, 2, 3... in write order (a hybrid clock's are microsecond wall time). */
class CountingClock extends HybridClock {
  private issued = 0;

  constructor() {
    super(0);
  }

  override next(): number {
    return ++this.issued;
  }
}

const DEFAULTS: FlusherOptions = {
  autoFlush: true,
  flushIntervalMs: 1000,
  highPriorityDelayMs: 10,
  batchSize: 100,
  flushConcurrency: 2,
  // Most tests check what runs at full concurrency; the 'scaling' tests below set the module's default.
  flushScaleUpLagMs: 0,
  maxDirtyEntries: 1_000_000,
  coalesceHotKeys: true,
  maxRetries: 3,
  retryBaseDelayMs: 100,
  retryMaxDelayMs: 10_000,
  circuitBreakerThreshold: 3,
};

let pipelines: WritePipeline[] = [];

/**
 * A write pipeline over a MemorySink, written to through accept() as the service does; random() = 1 makes every
 * backoff delay its capped maximum. Versions count 1, 2, 3... unless `clock` is given.
 */
function setup(
  overrides: Partial<FlusherOptions> = {},
  { start = true, random = (): number => 1, clock = new CountingClock() }: { start?: boolean; random?: () => number; clock?: HybridClock } = {},
) {
  const sink = new MemorySink();
  const listener = new RecordingListener();
  const logger = { log: vi.fn(), warn: vi.fn(), error: vi.fn() };
  const options = { ...DEFAULTS, ...overrides };
  const unbounded = Number.MAX_SAFE_INTEGER;
  const pipeline = new WritePipeline(
    { ...options, maxEntries: 10_000, maxDirtyBytes: unbounded, maxCleanBytes: unbounded, maxValueBytes: unbounded, backpressure: 'reject', backpressureTimeoutMs: 0 },
    { sink, load: async () => undefined, clock, timer: new TimeoutTimer(), logger, random },
  );
  pipeline.onCompleted((completion) => listener.record(completion));
  pipelines.push(pipeline);
  const dirty = pipeline.cache.dirty;
  /** Accepts a write as WriteBackService.set does; returns its version. */
  const write = (key: string, value: unknown, rank: number = NORMAL): number => {
    void pipeline.accept(key, value === null ? null : JSON.stringify(value), rank, false);
    return dirty.get(key)!.version;
  };
  if (start) pipeline.start();
  return { dirty, sink, listener, logger, pipeline, write, options, cache: pipeline.cache };
}

/**
 * A pipeline whose versions come from a hybrid clock, as in the module: the cache tells the dirty set whether a
 * new entry's key had a clean copy, i.e. was just flushed.
 */
function setupWithCache(overrides: Partial<FlusherOptions> = {}) {
  return setup(overrides, { clock: new HybridClock(0) });
}

/** Observes a promise without awaiting it. */
function observe<T>(promise: Promise<T>) {
  const state: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  promise.then(
    (value) => Object.assign(state, { settled: true, value }),
    (error: unknown) => Object.assign(state, { settled: true, error }),
  );
  return state;
}

const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(new Date('2030-01-01T00:00:00Z'));
});

afterEach(() => {
  for (const pipeline of pipelines) pipeline.stop();
  pipelines = [];
  vi.useRealTimers();
});

describe('Flusher', () => {
  describe('timer', () => {
    it('flushes after flushIntervalMs and not before', async () => {
      const { sink, dirty, write, listener, pipeline } = setup({ flushIntervalMs: 1000 });
      write('a', 1);
      await advance(999);
      expect(sink.calls).toHaveLength(0);
      expect(dirty.size).toBe(1);
      await advance(1);
      expect(sink.calls).toHaveLength(1);
      expect(sink.table.get('a')).toEqual({ json: '1', version: 1 });
      expect(dirty.size).toBe(0);
      expect(listener.committed).toEqual([{ item: { key: 'a', json: '1', version: 1, rank: NORMAL }, clean: true }]);
      expect(pipeline.status.counters).toMatchObject({ flushes: 1, flushedEntries: 1, flushErrors: 0 });
      expect(pipeline.status.lastFlushAt).toBeInstanceOf(Date);
    });

    it('keeps ticking: later writes are flushed by the next tick, and idle ticks write nothing', async () => {
      const { sink, write, pipeline } = setup({ flushIntervalMs: 1000 });
      await advance(5000);
      expect(sink.calls).toHaveLength(0);
      expect(pipeline.status.lastTickAt).toBe(Date.now());
      write('a', 1);
      await advance(1000);
      expect(sink.calls).toHaveLength(1);
      write('b', 2);
      await advance(999);
      expect(sink.calls).toHaveLength(1);
      await advance(1);
      expect(sink.calls).toHaveLength(2);
      expect([...sink.table.keys()]).toEqual(['a', 'b']);
    });

    it('coalesces: many writes to one key between ticks cost one row write', async () => {
      const { sink, write, pipeline } = setup();
      for (let i = 0; i < 50; i++) write('a', i);
      await advance(1000);
      expect(sink.calls).toEqual([[{ key: 'a', json: '49', version: 50, rank: NORMAL }]]);
      expect(pipeline.status.counters.flushedEntries).toBe(1);
    });

    it('does nothing without autoFlush until flush() is called', async () => {
      const { sink, write, pipeline } = setup({ autoFlush: false });
      write('a', 1);
      write('h', 1, HIGH);
      await advance(10_000);
      expect(sink.calls).toHaveLength(0);
      expect(pipeline.status.isTimerRunning).toBe(false);
      await pipeline.flush();
      expect(sink.table.size).toBe(2);
    });

    it('stopTimer stops the ticks', async () => {
      const { sink, write, pipeline } = setup();
      pipeline.stop();
      write('a', 1, HIGH);
      await advance(10_000);
      expect(sink.calls).toHaveLength(0);
    });

    it('a high-priority write flushes within highPriorityDelayMs; a normal one waits for the interval', async () => {
      const { sink, write } = setup({ flushIntervalMs: 1000, highPriorityDelayMs: 10 });
      write('n', 1);
      await advance(500);
      expect(sink.calls).toHaveLength(0);
      write('h', 1, HIGH);
      await advance(9);
      expect(sink.calls).toHaveLength(0);
      await advance(1);
      expect(sink.calls).toHaveLength(1);
      expect(sink.table.has('h')).toBe(true);
      // The queued normal write went along in the same round, after the high one.
      expect(sink.calls[0].map((item) => item.key)).toEqual(['h', 'n']);
    });

    it('a low or normal write does not flush early', async () => {
      const { sink, write } = setup({ flushIntervalMs: 1000, highPriorityDelayMs: 10 });
      write('l', 1, LOW);
      write('n', 1, NORMAL);
      await advance(990);
      expect(sink.calls).toHaveLength(0);
      await advance(10);
      expect(sink.calls).toHaveLength(1);
    });

    it('batches take high before normal before low', async () => {
      const { sink, write } = setup({ batchSize: 2, flushConcurrency: 1 });
      write('l1', 1, LOW);
      write('n1', 1, NORMAL);
      write('n2', 1, NORMAL);
      write('h1', 1, HIGH);
      await advance(10);
      expect(sink.calls.map((batch) => batch.map((item) => item.key))).toEqual([
        ['h1', 'n1'],
        ['n2', 'l1'],
      ]);
    });

    it('batchSize queued entries trigger an early flush', async () => {
      const { sink, write } = setup({ flushIntervalMs: 1000, batchSize: 5 });
      for (let i = 0; i < 4; i++) write(`k${i}`, i);
      await advance(100);
      expect(sink.calls).toHaveLength(0);
      write('k4', 4);
      await advance(1);
      expect(sink.calls).toHaveLength(1);
      expect(sink.calls[0]).toHaveLength(5);
      expect(sink.table.size).toBe(5);
    });

    it('the timer never overlaps rounds: with a slow sink, one round at a time', async () => {
      const { sink, write, pipeline } = setup({ flushIntervalMs: 100, batchSize: 1, flushConcurrency: 1 });
      sink.hold();
      write('a', 1);
      await advance(100);
      expect(sink.calls).toHaveLength(1);
      write('b', 1);
      write('c', 1, HIGH);
      // Fifty ticks (and an early high-priority one) pass while the round is stuck: none starts a second round.
      await advance(5000);
      expect(sink.calls).toHaveLength(1);
      expect(sink.maxConcurrent).toBe(1);
      expect(pipeline.status.lastTickAt).toBe(Date.now());
      sink.release();
      await advance(0);
      await advance(100);
      expect(sink.table.size).toBe(3);
      expect(sink.maxConcurrent).toBe(1);
      expect(sink.violations).toEqual([]);
    });
  });

  describe('batches', () => {
    it('never exceed batchSize and never hold one key twice, also while keys are rewritten in flight', async () => {
      const { sink, write, dirty, pipeline } = setup({ batchSize: 10, flushConcurrency: 3 });
      const latest = new Map<string, number>();
      sink.hold();
      for (let i = 0; i < 95; i++) latest.set(`k${i % 60}`, write(`k${i % 60}`, i));
      await advance(1000);
      expect(sink.calls).toHaveLength(3);
      // Rewrite every key while three batches are in flight.
      for (let i = 0; i < 60; i++) latest.set(`k${i}`, write(`k${i}`, 1000 + i, i % 3));
      sink.release();
      await pipeline.flush();
      expect(dirty.size).toBe(0);
      for (const batch of sink.calls) {
        expect(batch.length).toBeLessThanOrEqual(10);
        expect(new Set(batch.map((item) => item.key)).size).toBe(batch.length);
      }
      expect(sink.violations).toEqual([]);
      expect(sink.table.size).toBe(60);
      for (const [key, version] of latest) expect(sink.table.get(key)?.version).toBe(version);
    });

    it('runs flushConcurrency batches in parallel, and no more', async () => {
      const { sink, write, dirty } = setup({ batchSize: 10, flushConcurrency: 3 });
      sink.hold();
      for (let i = 0; i < 100; i++) write(`k${i}`, i);
      await advance(1000);
      expect(sink.concurrent).toBe(3);
      expect(sink.calls).toHaveLength(3);
      expect(dirty.inFlightCount).toBe(30);
      await advance(3000);
      expect(sink.concurrent).toBe(3);
      expect(sink.calls).toHaveLength(3);
      sink.release();
      await advance(0);
      expect(sink.table.size).toBe(100);
      expect(sink.calls).toHaveLength(10);
      expect(sink.maxConcurrent).toBe(3);
    });

    // BUG (reported): a round starts flushConcurrency workers once; a worker that finds the queue empty exits
    // and is never replaced while the round lasts. A round that started with little queued therefore runs on one
    // worker, and under sustained writes the round never ends, so the flusher stays at one batch in flight.
    it('keeps flushConcurrency batches in flight when the writes arrive during a round', async () => {
      const { sink, write } = setup({ batchSize: 10, flushConcurrency: 2, flushIntervalMs: 100 });
      write('first', 0);
      sink.hold();
      await advance(100); // the round starts with one entry: one worker busy, the other found nothing to do
      for (let i = 0; i < 100; i++) write(`k${i}`, i);
      await advance(1000);
      for (let i = 0; i < 5; i++) {
        sink.release(true);
        await advance(0);
      }
      expect(sink.maxConcurrent).toBe(2);
    });

    describe('scaling (flushScaleUpLagMs)', () => {
      it('writes one batch at a time while it keeps up, and flushConcurrency once the next queued write waited flushScaleUpLagMs', async () => {
        const { sink, write, pipeline } = setup({ batchSize: 10, flushConcurrency: 3, flushScaleUpLagMs: 1000 });
        sink.hold();
        for (let i = 0; i < 100; i++) write(`k${i}`, i);
        await advance(0); // a full batch starts a flush at once: one worker
        expect(sink.concurrent).toBe(1);
        await advance(999);
        expect(sink.concurrent).toBe(1);
        expect(pipeline.status.workers).toBe(1);
        expect(sink.calls).toHaveLength(1);
        await advance(1); // the tick sees the queue head 1000 ms old: behind
        expect(sink.concurrent).toBe(3);
        expect(pipeline.status.workers).toBe(3);
        sink.release();
        await advance(0);
        expect(sink.table.size).toBe(100);
        expect(sink.maxConcurrent).toBe(3);
        expect(pipeline.status.workers).toBe(0);
      });

      it('goes back to one batch at a time once caught up, and two workers finishing together leave exactly one', async () => {
        const { sink, write } = setup({ batchSize: 10, flushConcurrency: 2, flushScaleUpLagMs: 1000 });
        sink.hold();
        for (let i = 0; i < 20; i++) write(`old${i}`, i);
        await advance(1000);
        expect(sink.concurrent).toBe(2); // the second batch waited 1000 ms
        await advance(500);
        for (let i = 0; i < 30; i++) write(`new${i}`, i); // queued now: not behind
        sink.release(true);
        await advance(0);
        // Both workers finished at once and re-checked: one exits, the other takes the next batch.
        expect(sink.concurrent).toBe(1);
        expect(sink.waiting).toBe(1);
        sink.release();
        await advance(0);
        expect(sink.table.size).toBe(50);
      });

      it('a high write does not wait behind the batch in flight: it gets another connection at once', async () => {
        const { sink, write, pipeline } = setup({ batchSize: 10, flushConcurrency: 2, flushScaleUpLagMs: 60_000 });
        sink.hold();
        for (let i = 0; i < 30; i++) write(`k${i}`, i);
        await advance(0);
        expect(sink.concurrent).toBe(1);
        write('urgent', 1, HIGH);
        await advance(0);
        expect(sink.concurrent).toBe(2);
        expect(sink.calls[1][0].key).toBe('urgent');
        sink.release(true);
        await advance(0);
        // Nothing high is queued any more and nothing is late: back to one connection.
        expect(pipeline.status.workers).toBe(1);
        sink.release();
        await advance(0);
        expect(sink.table.size).toBe(31);
      });

      it('a worker that finishes while a high write is queued keeps going instead of scaling down', async () => {
        const { sink, write } = setup({ batchSize: 10, flushConcurrency: 2, flushScaleUpLagMs: 60_000 });
        sink.hold();
        for (let i = 0; i < 30; i++) write(`k${i}`, i);
        await advance(0);
        write('high1', 1, HIGH);
        await advance(0);
        expect(sink.concurrent).toBe(2);
        write('high2', 2, HIGH); // both connections busy: it waits for the first to finish
        sink.releaseFirst();
        await advance(0);
        expect(sink.concurrent).toBe(2);
        expect(sink.calls[2][0].key).toBe('high2');
        sink.release();
        await advance(0);
        expect(sink.table.size).toBe(32);
      });

      it('writes flushConcurrency batches while flush() waits', async () => {
        const { sink, write, pipeline } = setup({ batchSize: 10, flushConcurrency: 3, flushScaleUpLagMs: 60_000 });
        sink.hold();
        for (let i = 0; i < 100; i++) write(`k${i}`, i);
        await advance(0);
        expect(sink.concurrent).toBe(1);
        const flushed = observe(pipeline.flush());
        await advance(0);
        expect(sink.concurrent).toBe(3);
        sink.release();
        await advance(0);
        expect(flushed.value?.committed).toBe(100);
      });

      it('writes flushConcurrency batches once the dirty set holds half of maxDirtyEntries', async () => {
        const { sink, write } = setup({ batchSize: 10, flushConcurrency: 3, flushScaleUpLagMs: 60_000, maxDirtyEntries: 100 });
        sink.hold();
        for (let i = 0; i < 49; i++) write(`k${i}`, i);
        await advance(0);
        expect(sink.concurrent).toBe(1);
        write('k49', 49);
        await advance(1000); // the next tick sees 50 of 100 dirty
        expect(sink.concurrent).toBe(3);
        sink.release();
        await advance(0);
        expect(sink.table.size).toBe(50);
      });
    });

    it('flushConcurrency 1 writes one batch at a time', async () => {
      const { sink, write } = setup({ batchSize: 10, flushConcurrency: 1 });
      for (let i = 0; i < 50; i++) write(`k${i}`, i);
      await advance(1000);
      expect(sink.table.size).toBe(50);
      expect(sink.calls).toHaveLength(5);
      expect(sink.maxConcurrent).toBe(1);
    });

    it('a write during an in-flight flush is not lost: the newer version stays dirty and is flushed next', async () => {
      // coalesceHotKeys off: the round writes it right after (see 'hot keys' below for the held case).
      const { sink, write, dirty, listener } = setup({ coalesceHotKeys: false });
      const v1 = write('a', 'v1');
      sink.hold();
      await advance(1000);
      expect(dirty.get('a')!.inFlight).toBe(true);
      const v2 = write('a', 'v2');
      sink.release();
      await advance(0);
      // v1 committed but did not clean the entry; v2 stayed dirty and the round wrote it next.
      expect(sink.calls.map((batch) => batch.map((item) => item.version))).toEqual([[v1], [v2]]);
      expect(listener.committed).toEqual([
        { item: expect.objectContaining({ key: 'a', json: '"v1"', version: v1 }), clean: false },
        { item: expect.objectContaining({ key: 'a', json: '"v2"', version: v2 }), clean: true },
      ]);
      expect(sink.table.get('a')).toEqual({ json: '"v2"', version: v2 });
      expect(dirty.size).toBe(0);
    });

    it('a write during an in-flight flush that fails transiently is not lost either', async () => {
      const { sink, write, dirty } = setup({ flushIntervalMs: 100 });
      write('a', 'v1');
      sink.hold();
      sink.down = true;
      await advance(100);
      const v2 = write('a', 'v2');
      sink.release();
      await advance(0);
      expect(dirty.get('a')).toMatchObject({ json: '"v2"', version: v2, inFlight: false });
      sink.down = false;
      await advance(1000);
      expect(sink.table.get('a')).toEqual({ json: '"v2"', version: v2 });
      expect(dirty.size).toBe(0);
    });

    it('a delete during an in-flight upsert ends with the row deleted', async () => {
      const { sink, write, dirty } = setup();
      write('a', 'v1');
      sink.hold();
      await advance(1000);
      write('a', null);
      sink.release();
      await advance(1000);
      expect(sink.table.has('a')).toBe(false);
      expect(dirty.size).toBe(0);
    });
  });

  describe('hot keys (coalesceHotKeys)', () => {
    const keysOf = (batch: readonly FlushItem[]) => batch.map((item) => item.key);

    /** The first tick flushes 'a', which is written again while in flight: 'a' is held after. Returns that version. */
    async function heldRewrite({ sink, write, dirty }: ReturnType<typeof setup>): Promise<number> {
      write('a', 'v1');
      sink.hold();
      await advance(1000);
      const version = write('a', 'v2');
      sink.release();
      await advance(0);
      expect(dirty.heldCount).toBe(1);
      return version;
    }

    it('a key written again after its flush waits for the next interval tick instead of riding the next early batch', async () => {
      const { sink, write, dirty } = setupWithCache({ batchSize: 5, flushIntervalMs: 1000 });
      await advance(100);
      write('hot', 0);
      for (let i = 0; i < 4; i++) write(`a${i}`, i);
      await advance(0);
      expect(sink.calls.map(keysOf)).toEqual([['hot', 'a0', 'a1', 'a2', 'a3']]);
      // 'hot' is clean now; written again in this interval, it is held and does not count toward a batch.
      for (let i = 1; i <= 50; i++) write('hot', i);
      for (let i = 0; i < 4; i++) write(`b${i}`, i);
      expect(dirty.heldCount).toBe(1);
      expect(dirty.takeableCount).toBe(4);
      await advance(0);
      expect(sink.calls).toHaveLength(1);
      write('b4', 4);
      await advance(0);
      expect(sink.calls.map(keysOf)[1]).toEqual(['b0', 'b1', 'b2', 'b3', 'b4']);
      // The interval tick writes it once, with its latest value.
      await advance(899);
      expect(sink.calls).toHaveLength(2);
      await advance(1);
      expect(sink.calls.map(keysOf)[2]).toEqual(['hot']);
      expect(sink.table.get('hot')?.json).toBe('50');
      expect(dirty.size).toBe(0);
    });

    it('with coalesceHotKeys false the key written again rides the next early batch', async () => {
      const { sink, write } = setupWithCache({ batchSize: 5, flushIntervalMs: 1000, coalesceHotKeys: false });
      write('hot', 0);
      for (let i = 0; i < 4; i++) write(`a${i}`, i);
      await advance(0);
      write('hot', 1);
      for (let i = 0; i < 4; i++) write(`b${i}`, i);
      await advance(0);
      expect(sink.calls.map(keysOf)).toEqual([
        ['hot', 'a0', 'a1', 'a2', 'a3'],
        ['hot', 'b0', 'b1', 'b2', 'b3'],
      ]);
    });

    it('a write during an in-flight flush is held, not lost: the next interval tick writes it', async () => {
      const { sink, write, dirty, listener } = setup();
      const v1 = write('a', 'v1');
      sink.hold();
      await advance(1000);
      const v2 = write('a', 'v2');
      sink.release();
      await advance(0);
      expect(sink.calls.map((batch) => batch.map((item) => item.version))).toEqual([[v1]]);
      expect(dirty.heldCount).toBe(1);
      expect(listener.committed).toEqual([{ item: expect.objectContaining({ version: v1 }), clean: false }]);
      await advance(999);
      expect(sink.calls).toHaveLength(1);
      await advance(1);
      expect(sink.calls.map((batch) => batch.map((item) => item.version))).toEqual([[v1], [v2]]);
      expect(sink.table.get('a')).toEqual({ json: '"v2"', version: v2 });
      expect(dirty.size).toBe(0);
    });

    it('an early flush does not postpone the interval tick', async () => {
      const { sink, write } = setup({ batchSize: 3, flushIntervalMs: 1000 });
      await advance(500);
      for (let i = 0; i < 3; i++) write(`k${i}`, i);
      await advance(0);
      expect(sink.calls).toHaveLength(1);
      await advance(100);
      write('late', 1);
      await advance(399);
      expect(sink.calls).toHaveLength(1);
      await advance(1);
      expect(sink.calls.map(keysOf)[1]).toEqual(['late']);
    });

    it('a held key written as high is flushed within highPriorityDelayMs', async () => {
      const t = setup({ highPriorityDelayMs: 10 });
      const { sink, write, dirty } = t;
      await heldRewrite(t);
      const v3 = write('a', 'v3', HIGH);
      expect(dirty.heldCount).toBe(0);
      await advance(10);
      expect(sink.table.get('a')).toEqual({ json: '"v3"', version: v3 });
    });

    it('flush() writes held keys at once', async () => {
      const t = setup();
      const v2 = await heldRewrite(t);
      const report = await t.pipeline.flush();
      expect(report).toMatchObject({ requested: 1, committed: 1 });
      expect(t.sink.table.get('a')).toEqual({ json: '"v2"', version: v2 });
      expect(Date.now()).toBe(new Date('2030-01-01T00:00:01Z').getTime());
    });

    it('holds nothing once the dirty set reaches half of maxDirtyEntries', async () => {
      const t = setup({ batchSize: 5, maxDirtyEntries: 10 });
      const { sink, write, dirty } = t;
      await heldRewrite(t);
      for (let i = 0; i < 3; i++) write(`k${i}`, i);
      expect(dirty.heldCount).toBe(1);
      // The fifth dirty entry: half of maxDirtyEntries. 'a' is queued again and fills the batch with the others.
      write('k3', 3);
      expect(dirty.heldCount).toBe(0);
      await advance(0);
      expect(sink.calls.map(keysOf)[1]).toEqual(['a', 'k0', 'k1', 'k2', 'k3']);
    });

    it('holds nothing without the interval timer (autoFlush off, or stopped for a drain)', async () => {
      expect(setup({ autoFlush: false }).dirty.holding).toBe(false);
      const t = setup();
      const { dirty, pipeline } = t;
      expect(dirty.holding).toBe(true);
      await heldRewrite(t);
      pipeline.stop();
      expect(dirty.holding).toBe(false);
      expect(dirty.heldCount).toBe(0);
      expect(dirty.takeableCount).toBe(1);
    });
  });

  describe('transient failures', () => {
    it('are retried after backoff behind a circuit breaker, never dead-lettered, and the circuit closes on success', async () => {
      const { sink, write, dirty, pipeline, logger, listener } = setup({
        flushIntervalMs: 100,
        retryBaseDelayMs: 1000,
        retryMaxDelayMs: 8000,
        circuitBreakerThreshold: 3,
        maxRetries: 1,
      });
      sink.down = true;
      write('a', 1);
      write('b', 2);
      write('c', 3);

      await advance(100); // t=100: first attempt fails, next allowed at 1100
      expect(sink.calls).toHaveLength(1);
      expect(pipeline.status.counters).toMatchObject({ retries: 1, flushErrors: 1, flushes: 0, deadLettered: 0 });
      expect(pipeline.status.lastError?.code).toBe('08006');
      expect(dirty.size).toBe(3);
      expect(dirty.queuedCount).toBe(3);
      expect(pipeline.status.circuitState()).toBe('closed');

      await advance(999); // t=1099
      expect(sink.calls).toHaveLength(1);
      await advance(1); // t=1100: second attempt fails, next at 3100
      expect(sink.calls).toHaveLength(2);
      expect(pipeline.status.counters.retries).toBe(2);
      expect(pipeline.status.circuitState()).toBe('closed');

      await advance(1999); // t=3099
      expect(sink.calls).toHaveLength(2);
      await advance(1); // t=3100: third failure opens the circuit until 7100
      expect(sink.calls).toHaveLength(3);
      expect(pipeline.status.counters.retries).toBe(3);
      expect(pipeline.status.circuitState()).toBe('open');
      expect(logger.error).toHaveBeenCalledWith(expect.stringContaining('Circuit open'));

      await advance(3999); // t=7099
      expect(sink.calls).toHaveLength(3);
      expect(pipeline.status.circuitState()).toBe('open');

      // Nothing was dead-lettered, however often it failed (maxRetries is for permanent errors only).
      expect(sink.deadLetters).toEqual([]);
      expect(listener.deadLettered).toEqual([]);
      expect(dirty.size).toBe(3);

      sink.down = false;
      await advance(1); // t=7100: half-open, the attempt succeeds
      expect(sink.calls).toHaveLength(4);
      expect(pipeline.status.circuitState()).toBe('closed');
      expect(logger.log).toHaveBeenCalledWith(expect.stringContaining('circuit closed'));
      expect(dirty.size).toBe(0);
      expect([...sink.table.keys()].sort()).toEqual(['a', 'b', 'c']);
      expect(sink.deadLetters).toEqual([]);
    });

    it('retries use the injected jitter: random 0 halves the delay', async () => {
      const { sink, write } = setup({ flushIntervalMs: 100, retryBaseDelayMs: 1000 }, { random: () => 0 });
      sink.down = true;
      write('a', 1);
      await advance(100); // fails at t=100, next attempt at 600
      await advance(499);
      expect(sink.calls).toHaveLength(1);
      await advance(1);
      expect(sink.calls).toHaveLength(2);
    });

    it('a failed batch is retried before newer writes of the same priority', async () => {
      const { sink, write } = setup({ flushIntervalMs: 100, retryBaseDelayMs: 100, batchSize: 2, flushConcurrency: 1 });
      sink.down = true;
      write('old1', 1);
      write('old2', 1); // a full batch: flushed at once, and fails
      await advance(0);
      expect(sink.calls).toHaveLength(1);
      sink.down = false;
      write('new1', 1);
      write('new2', 1);
      await advance(1000);
      expect(sink.calls.slice(1).map((batch) => batch.map((item) => item.key))).toEqual([
        ['old1', 'old2'],
        ['new1', 'new2'],
      ]);
    });
  });

  describe('permanent failures', () => {
    it('1 bad row in a batch of 100: 99 commit, the bad row is dead-lettered once after maxRetries attempts', async () => {
      const { sink, write, dirty, pipeline, listener } = setup({ autoFlush: false, batchSize: 100, maxRetries: 3 });
      sink.rejectWhen = (item) => item.json?.includes('poison') ?? false;
      for (let i = 0; i < 100; i++) write(`k${i}`, i === 42 ? 'poison' : i);

      const report = await pipeline.flush();

      expect(report).toMatchObject({ requested: 100, committed: 99, deadLettered: 1 });
      expect(sink.table.size).toBe(99);
      expect(sink.table.has('k42')).toBe(false);
      expect(sink.deadLetters).toHaveLength(1);
      const [letter] = sink.deadLetters;
      expect(letter.item).toMatchObject({ key: 'k42', json: '"poison"' });
      expect(letter.failure).toMatchObject({ code: '23514', attempts: 3 });
      expect(letter.failure.firstFailedAt).toBeInstanceOf(Date);
      expect(letter.failure.lastFailedAt.getTime()).toBeGreaterThanOrEqual(letter.failure.firstFailedAt.getTime());
      // Split until alone, then tried alone maxRetries times.
      expect(sink.callsWith('k42').filter((batch) => batch.length === 1)).toHaveLength(3);
      expect(pipeline.status.counters.deadLettered).toBe(1);
      expect(dirty.size).toBe(0);
      expect(listener.deadLettered).toEqual([{ item: expect.objectContaining({ key: 'k42' }), clean: true }]);
      expect(new Set(listener.committed.map((c) => c.item.key)).size).toBe(99);
      // Transient-only bookkeeping untouched: no backoff, circuit closed.
      expect(pipeline.status.counters.retries).toBe(0);
      expect(pipeline.status.circuitState()).toBe('closed');

      // Exactly once: nothing left to flush, no second dead letter.
      const again = await pipeline.flush();
      expect(again).toMatchObject({ requested: 0, committed: 0, deadLettered: 0 });
      expect(sink.deadLetters).toHaveLength(1);
    });

    it('isolates several bad rows (deletes included) across batches', async () => {
      const { sink, write, pipeline } = setup({ autoFlush: false, batchSize: 16, maxRetries: 2 });
      sink.rejectWhen = (item) => item.key.endsWith('7');
      for (let i = 0; i < 50; i++) write(`k${i}`, i);
      const report = await pipeline.flush();
      const bad = ['k7', 'k17', 'k27', 'k37', 'k47'];
      expect(report).toMatchObject({ requested: 50, committed: 45, deadLettered: 5 });
      expect(sink.deadLetters.map((d) => d.item.key).sort()).toEqual(bad.sort());
      for (const letter of sink.deadLetters) expect(letter.failure.attempts).toBe(2);
      expect(sink.table.size).toBe(45);
    });

    it('a newer write of a poison key supersedes it: it is not dead-lettered, the new value commits', async () => {
      const { sink, write, dirty, pipeline } = setup({ autoFlush: false, maxRetries: 1 });
      sink.rejectWhen = (item) => item.json === '"poison"';
      write('a', 'poison');
      sink.hold();
      const flushing = observe(pipeline.flush());
      await advance(0);
      expect(dirty.get('a')!.inFlight).toBe(true);
      const good = write('a', 'good');
      sink.release();
      await advance(0);
      expect(flushing.settled).toBe(true);
      expect(flushing.value).toMatchObject({ requested: 1, committed: 1, deadLettered: 0 });
      expect(sink.deadLetters).toEqual([]);
      expect(pipeline.status.counters.deadLettered).toBe(0);
      expect(sink.table.get('a')).toEqual({ json: '"good"', version: good });
      expect(dirty.size).toBe(0);
    });

    it('when the dead-letter insert fails the row stays dirty, and is dead-lettered once it works', async () => {
      const { sink, write, dirty, pipeline } = setup({ flushIntervalMs: 100, maxRetries: 1 });
      sink.rejectWhen = () => true;
      sink.deadLetterDown = true;
      write('a', 1);
      await advance(100);
      expect(sink.deadLetters).toEqual([]);
      expect(dirty.has('a')).toBe(true);
      expect(dirty.get('a')!.inFlight).toBe(false);
      sink.deadLetterDown = false;
      await advance(10_000);
      expect(sink.deadLetters).toHaveLength(1);
      expect(dirty.size).toBe(0);
      expect(pipeline.status.counters.deadLettered).toBe(1);
    });
  });

  describe('flush()', () => {
    it('with nothing dirty resolves at once with an empty report', async () => {
      const { pipeline, sink } = setup();
      expect(await pipeline.flush()).toMatchObject({ requested: 0, committed: 0, deadLettered: 0 });
      expect(sink.calls).toHaveLength(0);
    });

    it('resolves only when everything dirty at call time is committed', async () => {
      const { sink, write, pipeline } = setup();
      write('a', 1);
      write('b', 2);
      sink.hold();
      const flushing = observe(pipeline.flush());
      await advance(0);
      write('c', 3); // after the call: not waited for
      await advance(5000);
      expect(flushing.settled).toBe(false);
      sink.release();
      await advance(0);
      expect(flushing.settled).toBe(true);
      expect(flushing.value).toMatchObject({ requested: 2, committed: 2, deadLettered: 0 });
      expect(sink.table.has('a')).toBe(true);
      expect(sink.table.has('b')).toBe(true);
    });

    it('waits for entries already in flight in a timer round', async () => {
      const { sink, write, pipeline } = setup({ batchSize: 1, flushConcurrency: 1 });
      write('a', 1);
      sink.hold();
      await advance(1000); // the timer round holds 'a'
      write('b', 2);
      const flushing = observe(pipeline.flush());
      await advance(0);
      expect(flushing.settled).toBe(false);
      sink.release();
      await advance(0);
      expect(flushing.value).toMatchObject({ requested: 2, committed: 2 });
      expect(sink.table.size).toBe(2);
    });

    it('counts an entry rewritten during the flush as committed once a version at least as new commits', async () => {
      const { sink, write, pipeline } = setup({ autoFlush: false });
      write('a', 1);
      sink.hold();
      const flushing = observe(pipeline.flush());
      await advance(0);
      const v2 = write('a', 2);
      sink.release();
      await advance(0);
      expect(flushing.value).toMatchObject({ requested: 1, committed: 1 });
      // The newer version is not lost either: still dirty for the next flush.
      await pipeline.flush();
      expect(sink.table.get('a')?.version).toBe(v2);
    });

    it('an older version committing does not satisfy a flush that must see a newer one', async () => {
      const { sink, write, pipeline, dirty } = setup({ batchSize: 1, flushConcurrency: 1 });
      write('a', 1);
      sink.hold();
      await advance(1000); // the timer round holds version 1
      const v2 = write('a', 2);
      const flushing = observe(pipeline.flush()); // must see version 2 persisted
      await advance(0);
      sink.release(true); // version 1 commits, version 2 is taken and held
      await advance(0);
      expect(sink.table.get('a')?.version).toBe(v2 - 1);
      expect(dirty.get('a')).toMatchObject({ version: v2, inFlight: true });
      expect(flushing.settled).toBe(false);
      sink.release();
      await advance(0);
      expect(flushing.value).toMatchObject({ requested: 1, committed: 1 });
      expect(sink.table.get('a')?.version).toBe(v2);
    });

    it('keeps retrying transient failures (with backoff) until they commit', async () => {
      const { sink, write, pipeline } = setup({ autoFlush: false, retryBaseDelayMs: 100, retryMaxDelayMs: 1000 });
      sink.down = true;
      write('a', 1);
      write('b', 2);
      const flushing = observe(pipeline.flush());
      await advance(5000);
      expect(flushing.settled).toBe(false);
      const attempts = sink.calls.length;
      expect(attempts).toBeGreaterThan(2);
      expect(attempts).toBeLessThan(20); // backoff, not a busy loop
      sink.down = false;
      await advance(1000);
      expect(flushing.settled).toBe(true);
      expect(flushing.value).toMatchObject({ requested: 2, committed: 2, deadLettered: 0 });
      expect(sink.deadLetters).toEqual([]);
    });

    it('flush({ timeoutMs }) rejects with WriteBackFlushTimeoutError while the sink is down; entries stay dirty', async () => {
      const { sink, write, dirty, pipeline } = setup({ flushIntervalMs: 100, retryBaseDelayMs: 100, retryMaxDelayMs: 500 });
      sink.down = true;
      write('a', 1);
      write('b', 2);
      write('c', 3);
      const flushing = observe(pipeline.flush({ timeoutMs: 5000 }));
      await advance(4999);
      expect(flushing.settled).toBe(false);
      await advance(1);
      expect(flushing.settled).toBe(true);
      expect(flushing.error).toBeInstanceOf(WriteBackFlushTimeoutError);
      expect(flushing.error).toMatchObject({ pending: 3 });
      expect((flushing.error as Error).message).toContain('5000');
      expect(dirty.size).toBe(3);
      expect(sink.deadLetters).toEqual([]);
      // They are still flushed once Postgres is back.
      sink.down = false;
      await advance(1000);
      expect(sink.table.size).toBe(3);
      expect(dirty.size).toBe(0);
    });

    it('flush({ timeoutMs }) resolves normally when it finishes in time', async () => {
      const { write, pipeline } = setup();
      write('a', 1);
      const report = await pipeline.flush({ timeoutMs: 1000 });
      expect(report).toMatchObject({ requested: 1, committed: 1 });
      expect(vi.getTimerCount()).toBe(1); // only the flush timer: the timeout was cleared
    });
  });

  describe('drain()', () => {
    it('flushes everything and returns 0 when Postgres is up', async () => {
      const { sink, write, pipeline } = setup();
      for (let i = 0; i < 10; i++) write(`k${i}`, i);
      expect(await pipeline.drain(1000)).toBe(0);
      expect(sink.table.size).toBe(10);
      expect(pipeline.status.isTimerRunning).toBe(false);
    });

    it('returns the exact number of entries left when the sink is down', async () => {
      const { sink, write, pipeline, dirty } = setup();
      sink.down = true;
      for (let i = 0; i < 7; i++) write(`k${i}`, i);
      const draining = observe(pipeline.drain(2000));
      await advance(1999);
      expect(draining.settled).toBe(false);
      await advance(1);
      expect(draining.settled).toBe(true);
      expect(draining.value).toBe(7);
      expect(dirty.size).toBe(7);
      expect(pipeline.status.isTimerRunning).toBe(false);
      expect(sink.deadLetters).toEqual([]);
    });

    it('counts entries stuck in flight and a partial drain exactly', async () => {
      const { sink, write, pipeline } = setup({ batchSize: 3, flushConcurrency: 1 });
      for (let i = 0; i < 3; i++) write(`k${i}`, i);
      sink.hold();
      await advance(1000); // k0..k2 in flight, hanging
      write('k3', 3);
      const draining = observe(pipeline.drain(500));
      await advance(500);
      expect(draining.value).toBe(4);
    });

    it('a batch that fails after the drain gave up is left dirty, and its log promises no retry', async () => {
      const { sink, write, pipeline, dirty, logger } = setup({ batchSize: 3, flushConcurrency: 1 });
      for (let i = 0; i < 3; i++) write(`k${i}`, i);
      sink.hold();
      await advance(1000);
      const draining = observe(pipeline.drain(100));
      await advance(100);
      expect(draining.value).toBe(3);
      sink.down = true; // the DataSource is closed under the batch that was still in flight
      sink.release();
      await advance(0);
      expect(dirty.size).toBe(3);
      expect(logger.warn).toHaveBeenLastCalledWith(expect.stringMatching(/after shutdown began .*left dirty, not retried/));
      expect(logger.warn).not.toHaveBeenLastCalledWith(expect.stringMatching(/retry in/));
    });

    it('stops the timer: no more rounds after drain', async () => {
      const { sink, write, pipeline } = setup();
      sink.down = true;
      write('a', 1);
      const draining = observe(pipeline.drain(100));
      await advance(100);
      expect(draining.value).toBe(1);
      const calls = sink.calls.length;
      sink.down = false;
      write('b', 1, HIGH);
      await advance(10_000);
      expect(sink.calls).toHaveLength(calls);
    });
  });

  describe('flushKey()', () => {
    it('commits one key at once, outside the round order', async () => {
      const { sink, write, dirty, pipeline } = setup({ autoFlush: false });
      write('other', 1);
      write('a', 1);
      expect(await pipeline.writeThrough('a')).toEqual({ outcome: 'committed' });
      expect(sink.calls).toEqual([[expect.objectContaining({ key: 'a' })]]);
      expect(dirty.has('a')).toBe(false);
      expect(dirty.has('other')).toBe(true);
    });

    it('is committed for a key that is not dirty', async () => {
      const { sink, pipeline } = setup();
      expect(await pipeline.writeThrough('nope')).toEqual({ outcome: 'committed' });
      expect(sink.calls).toHaveLength(0);
    });

    it('is queued (with the error) on a transient failure: the entry stays dirty', async () => {
      const { sink, write, dirty, pipeline } = setup({ autoFlush: false });
      sink.down = true;
      write('a', 1);
      const result = await pipeline.writeThrough('a');
      expect(result.outcome).toBe('queued');
      expect(result.error).toMatchObject({ code: '08006' });
      expect(dirty.get('a')).toMatchObject({ inFlight: false });
      expect(dirty.queuedCount).toBe(1);
      expect(sink.deadLetters).toEqual([]);
    });

    it('is deadLettered (with the error) when Postgres rejects the row', async () => {
      const { sink, write, dirty, pipeline } = setup({ autoFlush: false, maxRetries: 2 });
      sink.rejectWhen = () => true;
      write('a', 'bad');
      const result = await pipeline.writeThrough('a');
      expect(result.outcome).toBe('deadLettered');
      expect(result.error).toMatchObject({ code: '23514' });
      expect(sink.deadLetters).toHaveLength(1);
      expect(sink.deadLetters[0].failure.attempts).toBe(2);
      expect(dirty.size).toBe(0);
    });

    it('waits for an in-flight flush of the key, then writes the newer version', async () => {
      const { sink, write, pipeline } = setup({ batchSize: 1, flushConcurrency: 1 });
      write('a', 1);
      sink.hold();
      await advance(1000);
      const v2 = write('a', 2);
      const result = observe(pipeline.writeThrough('a'));
      await advance(0);
      expect(result.settled).toBe(false);
      sink.release();
      await advance(0);
      expect(result.value).toEqual({ outcome: 'committed' });
      expect(sink.table.get('a')?.version).toBe(v2);
      expect(sink.violations).toEqual([]);
    });
  });
});
