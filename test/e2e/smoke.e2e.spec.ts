import { afterEach, describe, expect, it } from 'vitest';
import { tableRows } from '../support/database.js';
import { startWriteBack, type WriteBackTestApp } from '../support/write-back-app.js';

describe('smoke', () => {
  let t: WriteBackTestApp;
  afterEach(async () => t?.close());

  it('writes, reads, flushes', async () => {
    t = await startWriteBack();
    await t.service.set('a', { n: 1 });
    expect(await t.service.get('a')).toEqual({ n: 1 });
    const report = await t.service.flush();
    expect(report).toMatchObject({ requested: 1, committed: 1, deadLettered: 0 });
    const rows = await tableRows(t.sql);
    expect(rows.get('a')?.value).toEqual({ n: 1 });
  });
});
