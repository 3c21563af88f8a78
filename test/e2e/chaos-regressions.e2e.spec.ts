import { afterEach, describe, expect, it } from 'vitest';
import { tableRows } from '../support/database.js';
import { until } from '../support/wait.js';
import { startWriteBack, type WriteBackTestApp } from '../support/write-back-app.js';

/** Bugs the chaos suite (npm run test:chaos) found, pinned down as small deterministic specs. */
describe('chaos regressions', () => {
  let t: WriteBackTestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('backpressure "block": one freed slot admits one waiting writer, never all of them (dirty <= maxDirtyEntries)', async () => {
    t = await startWriteBack({ maxDirtyEntries: 5, backpressure: 'block', backpressureTimeoutMs: 10_000 });
    const service = t.service;
    for (let i = 0; i < 5; i++) await service.set(`k${i}`, i);
    let maxDirty = 0;
    let admitted = 0;
    const waiting = Array.from({ length: 10 }, (_, i) =>
      service.set(`new${i}`, i).then(() => {
        admitted++;
        maxDirty = Math.max(maxDirty, service.stats().dirty);
      }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(admitted).toBe(0);
    // A write-through of a dirty key commits that one key: exactly one slot frees up.
    await service.set('k0', 'again', { writeThrough: true });
    await until(() => admitted >= 1, 5000, 'a waiting writer to be admitted');
    expect(service.stats().dirty).toBe(5);
    expect(admitted).toBe(1);
    // Each flush frees five slots: the other nine get in five at a time.
    while (admitted < 10) {
      await service.flush();
      await until(() => admitted === 10 || service.stats().dirty === 5, 5000, 'waiting writers to fill the freed slots');
    }
    await Promise.all(waiting);
    expect(maxDirty).toBeLessThanOrEqual(5);
    await service.flush();
    expect(service.stats().dirty).toBe(0);
  });

  /**
   * Found by the chaos work: a committed delete left no trace, so replaying a dead letter written *before* the
   * delete re-inserted the old value (the table went backwards, invariant 2). Deletes now record their version in
   * write_back_tombstones, and an upsert at or below it is skipped (and reported as superseded).
   */
  it('a dead-letter replay never undoes a later delete of the same key', async () => {
    t = await startWriteBack({ maxRetries: 1 });
    await t.sql.query(`ALTER TABLE write_back_entries ADD CONSTRAINT no_poison CHECK ((value->>'bad') IS DISTINCT FROM 'yes')`);
    await t.service.set('k', { bad: 'yes' });
    await t.service.flush();
    const [letter] = await t.service.listDeadLetters();
    expect(letter).toMatchObject({ key: 'k', errorCode: '23514' });
    // The user deletes the key afterwards (a newer version), then an operator fixes the constraint and replays.
    await t.service.delete('k');
    await t.service.flush();
    await t.sql.query('ALTER TABLE write_back_entries DROP CONSTRAINT no_poison');
    const result = await t.service.replayDeadLetter(letter.id);
    expect(result).toEqual({ requeued: false, outcome: 'superseded' });
    expect(await t.service.get('k')).toBeUndefined();
    expect((await tableRows(t.sql)).has('k')).toBe(false);
  });
});
