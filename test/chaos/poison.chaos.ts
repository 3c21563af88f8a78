import { afterEach, describe, expect, it } from 'vitest';
import type { WriteBackDeadLetter } from '../../src/write-back/index.js';
import { canonical, chaosApp, Load, report, Sampler, summarize, verifyAcked } from '../support/chaos.js';
import { connectRetrying } from '../support/database.js';
import { sleep } from '../support/wait.js';
import { startWriteBack, type ProxiedTestApp } from '../support/write-back-app.js';

const MAX_RETRIES = 2;
const KEYS_PER_WRITER = 300;

/** Every dead letter, paging through the table. */
async function allDeadLetters(t: ProxiedTestApp): Promise<WriteBackDeadLetter[]> {
  const letters: WriteBackDeadLetter[] = [];
  for (;;) {
    const page = await t.service.listDeadLetters({ limit: 500, afterId: letters.at(-1)?.id });
    letters.push(...page);
    if (page.length < 500) return letters;
  }
}

/**
 * Poison data among good data: a CHECK constraint rejects ~1% of the rows. Good rows commit in their batches,
 * each poison row is dead-lettered exactly once with its error code and message, the flusher never stalls, and
 * replaying the dead letters after dropping the constraint commits them.
 */
describe('chaos: poison rows among good ones under load', () => {
  let t: ProxiedTestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('dead-letters each poison row once, commits the rest, never stalls; replay commits them after the fix', async () => {
    t = await startWriteBack({ autoFlush: true, flushIntervalMs: 50, batchSize: 200, flushConcurrency: 2, maxRetries: MAX_RETRIES, maxDirtyEntries: 100_000 }, chaosApp());
    const { service } = t;
    const sql = await connectRetrying(t.schema);
    await sql.query(`ALTER TABLE write_back_entries ADD CONSTRAINT chaos_no_poison CHECK ((value->>'poison') IS DISTINCT FROM 'yes')`);

    // About 1 operation in 100 writes a poison value, to a key of its own (so nothing supersedes it).
    const isPoison = (writer: number, n: number) => (n * 31 + writer) % 100 === 0;
    const poisonKeys = new Map<string, number>();
    const load = new Load(service, {
      writers: 32,
      keysPerWriter: KEYS_PER_WRITER,
      maxOpsPerWriter: 1200,
      maxDurationMs: 60_000,
      // About 6 s of load at a few thousand writes/s: long enough to watch the flusher in many windows.
      thinkMs: 4,
      op: (writer, n) => {
        if (isPoison(writer, n)) {
          const key = `poison:w${writer}:${n}`;
          poisonKeys.set(key, n);
          return { key, value: { w: writer, n, poison: 'yes' } };
        }
        const key = `w${writer}:${n % KEYS_PER_WRITER}`;
        return { key, value: n % 50 === 7 ? undefined : { w: writer, n, poison: 'no', pad: 'x'.repeat(64) } };
      },
    });
    const sampler = new Sampler(t).start(20);
    const started = Date.now();
    load.start();

    // The flusher never stalls: rows keep committing in every half-second window of the run.
    const stalls: number[] = [];
    let last = service.stats().flushedEntries;
    let windows = 0;
    const finished = load.finished().then(() => true);
    while (!(await Promise.race([finished, sleep(500).then(() => false)]))) {
      const now = service.stats().flushedEntries;
      windows++;
      if (now === last) stalls.push(Date.now() - started);
      last = now;
    }
    const loadMs = Date.now() - started;
    const report1 = await service.flush({ timeoutMs: 60_000 });
    const flushMs = Date.now() - started - loadMs;
    sampler.stop();
    expect(load.unexpected).toEqual([]);
    expect(windows).toBeGreaterThanOrEqual(4);
    expect(stalls).toEqual([]);
    expect(report1.deadLettered).toBeGreaterThanOrEqual(0);

    const letters = await allDeadLetters(t);
    const ackedPoison = [...load.acked.keys()].filter((key) => key.startsWith('poison:'));
    expect(ackedPoison.length).toBeGreaterThan(100);
    expect(letters).toHaveLength(ackedPoison.length);
    expect(new Set(letters.map((l) => l.key)).size).toBe(letters.length);
    const deadLettered = new Map<string, number>();
    for (const letter of letters) {
      expect(letter.key.startsWith('poison:')).toBe(true);
      expect(letter).toMatchObject({ operation: 'upsert', errorCode: '23514', attempts: MAX_RETRIES });
      expect(letter.errorMessage).toContain('chaos_no_poison');
      expect(canonical(letter.value)).toEqual(canonical(load.acked.get(letter.key)!.value));
      deadLettered.set(letter.key, poisonKeys.get(letter.key)!);
    }
    const stats = service.stats();
    expect(stats).toMatchObject({ dirty: 0, deadLettered: letters.length });
    // Every good row is in the table; the poison ones are exactly the dead letters.
    const before = await verifyAcked(t.schema, load.acked, deadLettered);
    expect(before.lostKeys).toEqual([]);
    const { rows } = await sql.query(`SELECT count(*)::int AS n FROM write_back_entries WHERE key LIKE 'poison:%'`);
    expect(rows[0].n).toBe(0);

    // The fix: drop the constraint, replay every dead letter.
    await sql.query('ALTER TABLE write_back_entries DROP CONSTRAINT chaos_no_poison');
    const outcomes = new Map<string, number>();
    const replayStarted = Date.now();
    for (const letter of letters) {
      const result = await service.replayDeadLetter(letter.id);
      outcomes.set(result.outcome, (outcomes.get(result.outcome) ?? 0) + 1);
    }
    const replayMs = Date.now() - replayStarted;
    expect(Object.fromEntries(outcomes)).toEqual({ committed: letters.length });
    expect(await service.countDeadLetters()).toBe(0);
    const after = await verifyAcked(t.schema, load.acked);
    await sql.end();
    report(
      'poison',
      summarize(load, after, sampler, letters.length),
      `${ackedPoison.length} poison writes (${((100 * ackedPoison.length) / load.acknowledged).toFixed(2)}%), each dead-lettered once ` +
        `(23514, ${MAX_RETRIES} attempts); ${windows} half-second windows, none without commits; replayed after the fix: ` +
        `${outcomes.get('committed') ?? 0} committed in ${replayMs} ms; load ${loadMs} ms, final flush ${flushMs} ms; rows ${after.rows}`,
    );
    expect(after.lostKeys).toEqual([]);
  });
});
