import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WriteAheadLog } from '../../../src/write-back/wal/index.js';
import { tempDir } from '../../support/temp-dir.js';
import { until } from '../../support/wait.js';
import { rec, segmentFiles, syncOptions } from '../../support/wal.js';

const asyncOptions = (dir: string, syncIntervalMs: number) => syncOptions(dir, { mode: 'wal-async', syncIntervalMs });

/** Polls through setImmediate, which keeps working while setTimeout is faked. */
async function pollUntil(check: () => boolean | Promise<boolean>, rounds = 5000): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    if (await check()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error('condition not met');
}

async function fileContains(dir: string, text: string): Promise<boolean> {
  const [file] = await segmentFiles(dir);
  return file !== undefined && (await readFile(join(dir, file), 'latin1')).includes(text);
}

afterEach(() => {
  vi.useRealTimers();
});

describe('WriteAheadLog wal-async', () => {
  it('resolves appends at once, writes them promptly, and fdatasyncs only when the interval elapses', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const dir = await tempDir();
    const { wal } = await WriteAheadLog.open(asyncOptions(dir, 1000));

    await Promise.all([wal.append(rec('alpha', 1)), wal.append(rec('beta', 2))]);
    expect(wal.stats().syncs).toBe(0);
    await pollUntil(() => fileContains(dir, 'beta'));
    expect(wal.stats().syncs).toBe(0);

    vi.advanceTimersByTime(999);
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(wal.stats().syncs).toBe(0);

    vi.advanceTimersByTime(1);
    await pollUntil(() => wal.stats().syncs === 1);

    // Nothing new written: later ticks do not sync again.
    vi.advanceTimersByTime(5000);
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(wal.stats().syncs).toBe(1);
    await wal.close();
  });

  it('syncs about syncIntervalMs after a write (real timers)', async () => {
    const dir = await tempDir();
    const { wal } = await WriteAheadLog.open(asyncOptions(dir, 100));
    const started = Date.now();
    await wal.append(rec('k', 1));
    expect(wal.stats().syncs).toBe(0);
    await until(() => wal.stats().syncs >= 1, 3000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(50);
    await wal.close();
  });

  it('writes and syncs buffered records on close', async () => {
    const dir = await tempDir();
    const { wal } = await WriteAheadLog.open(asyncOptions(dir, 60_000));
    const records = Array.from({ length: 50 }, (_, i) => rec(`key-${i}`, i + 1));
    for (const record of records) void wal.append(record);
    await wal.close();
    expect(wal.stats().syncs).toBe(1);
    const { wal: reopened, recovered } = await WriteAheadLog.open(asyncOptions(dir, 60_000));
    expect(recovered).toEqual(records);
    await reopened.close();
  });
});
