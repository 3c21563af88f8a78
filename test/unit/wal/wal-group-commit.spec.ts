import fs from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WalIoError, WriteAheadLog } from '../../../src/write-back/wal/index.js';
import { WriteBackClosedError, WriteBackValidationError } from '../../../src/write-back/write-back.errors.js';
import { tempDir } from '../../support/temp-dir.js';
import { sleep } from '../../support/wait.js';
import { captureLogger, rec, syncOptions } from '../../support/wal.js';

type Event =
  | { type: 'write-done'; data: string }
  | { type: 'sync-start' }
  | { type: 'sync-end' }
  | { type: 'ack'; key: string };

/** The prototype shared by every fs/promises FileHandle, to observe the log's real writes and syncs. */
async function fileHandlePrototype(dir: string): Promise<FileHandle> {
  const handle = await open(join(dir, 'probe'), 'w');
  await handle.close();
  return Object.getPrototypeOf(handle) as FileHandle;
}

/** Wraps (does not replace) the log's writes (FileHandle.write, fs.writeSync) and datasync, recording when they finish. */
async function recordIo(dir: string, events: Event[], onSyncStart?: () => void): Promise<void> {
  const proto = await fileHandlePrototype(dir);
  const write = proto.write;
  const datasync = proto.datasync;
  vi.spyOn(proto, 'write').mockImplementation(async function (this: FileHandle, ...args: unknown[]) {
    const [buffer, offset, length] = args as [Buffer, number, number];
    const data = buffer.toString('latin1', offset, offset + length);
    const result = await (write as (...a: unknown[]) => Promise<unknown>).apply(this, args);
    events.push({ type: 'write-done', data });
    return result as never;
  });
  // Groups up to 1 MiB are written with fs.writeSync; ESM named imports of node:fs see the spy after
  // syncBuiltinESMExports().
  const writeSync = fs.writeSync;
  vi.spyOn(fs, 'writeSync').mockImplementation(function (this: unknown, ...args: unknown[]) {
    const result = (writeSync as (...a: unknown[]) => number).apply(this, args);
    const [, buffer, offset, length] = args as [number, unknown, number, number];
    if (Buffer.isBuffer(buffer)) events.push({ type: 'write-done', data: buffer.toString('latin1', offset, offset + length) });
    return result;
  });
  syncBuiltinESMExports();
  vi.spyOn(proto, 'datasync').mockImplementation(async function (this: FileHandle) {
    events.push({ type: 'sync-start' });
    onSyncStart?.();
    await datasync.call(this);
    events.push({ type: 'sync-end' });
  });
}

/** Checks that each acknowledged key was written, then covered by an fdatasync that started after the write. */
function expectEveryAckCovered(events: Event[], keys: string[]): void {
  for (const key of keys) {
    const ack = events.findIndex((event) => event.type === 'ack' && event.key === key);
    expect(ack, `ack of ${key}`).toBeGreaterThan(-1);
    const written = events.findIndex((event) => event.type === 'write-done' && event.data.includes(key));
    expect(written, `write of ${key}`).toBeGreaterThan(-1);
    const syncStart = events.findIndex((event, i) => i > written && event.type === 'sync-start');
    const syncEnd = events.findIndex((event, i) => i > syncStart && event.type === 'sync-end');
    expect(syncStart, `sync after ${key} was written`).toBeGreaterThan(written);
    expect(syncEnd, `${key} acknowledged only after the sync that covers it`).toBeLessThan(ack);
  }
}

afterEach(() => {
  vi.restoreAllMocks();
  syncBuiltinESMExports();
});

describe('WriteAheadLog group commit (wal-sync)', () => {
  it('makes 100 concurrent appends durable with a handful of fdatasyncs', async () => {
    const dir = await tempDir();
    const { wal } = await WriteAheadLog.open(syncOptions(dir));
    const records = Array.from({ length: 100 }, (_, i) => rec(`key-${i}`, 1000 + i));
    await Promise.all(records.map((record) => wal.append(record)));
    const { syncs, bytes, pendingRecords } = wal.stats();
    expect(syncs).toBeGreaterThanOrEqual(1);
    expect(syncs).toBeLessThanOrEqual(5);
    expect(bytes).toBeGreaterThan(0);
    expect(pendingRecords).toBe(100);
    await wal.close();

    const { wal: reopened, recovered } = await WriteAheadLog.open(syncOptions(dir));
    expect(recovered).toEqual(records);
    await reopened.close();
  });

  it('acknowledges each append only after an fdatasync that covers its write, one write and sync per group', async () => {
    const dir = await tempDir();
    const events: Event[] = [];
    const secondWave: Array<Promise<void>> = [];
    let wal!: WriteAheadLog;
    let fired = false;
    // Appends made while the first group's fdatasync runs must wait for the next group.
    await recordIo(dir, events, () => {
      if (fired) return;
      fired = true;
      for (let i = 0; i < 50; i++) {
        const key = `late-${String(i).padStart(3, '0')}`;
        secondWave.push(wal.append(rec(key, 2000 + i)).then(() => void events.push({ type: 'ack', key })));
      }
    });
    ({ wal } = await WriteAheadLog.open(syncOptions(dir)));
    const syncsAtOpen = events.filter((event) => event.type === 'sync-start').length;
    // Opening zero-fills the first segment; only the appends' writes count below.
    const writesAtOpen = events.filter((event) => event.type === 'write-done').length;

    const firstKeys = Array.from({ length: 100 }, (_, i) => `early-${String(i).padStart(3, '0')}`);
    await Promise.all(
      firstKeys.map((key, i) => wal.append(rec(key, 1000 + i)).then(() => void events.push({ type: 'ack', key }))),
    );
    await Promise.all(secondWave);
    const lateKeys = Array.from({ length: 50 }, (_, i) => `late-${String(i).padStart(3, '0')}`);

    expectEveryAckCovered(events, [...firstKeys, ...lateKeys]);
    const writes = events.filter((event) => event.type === 'write-done').slice(writesAtOpen);
    // Each group goes out as one write: the first 100 together, the 50 late ones together.
    expect(writes).toHaveLength(2);
    expect(writes[0]!.type === 'write-done' && writes[0]!.data.includes('late-')).toBe(false);
    expect(events.filter((event) => event.type === 'sync-start').length - syncsAtOpen).toBe(2);
    expect(wal.stats().syncs).toBe(2);
    await wal.close();
  });

  it('keeps timers running while writers append without pause', async () => {
    const dir = await tempDir();
    const { wal } = await WriteAheadLog.open(syncOptions(dir));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    let stop = false;
    let version = 1;
    const writer = async (w: number): Promise<void> => {
      while (!stop) await wal.append(rec(`w${w}`, version++));
    };
    const writers = Array.from({ length: 64 }, (_, w) => writer(w));
    await sleep(300);
    stop = true;
    await Promise.all(writers);
    clearInterval(timer);
    expect(ticks).toBeGreaterThanOrEqual(5);
    expect(wal.stats().syncs).toBeGreaterThan(1);
    await wal.close();
  });

  it('does not write a record whose version is not above the newest of its key', async () => {
    const dir = await tempDir();
    const { wal } = await WriteAheadLog.open(syncOptions(dir));
    await wal.append(rec('k', 10));
    const { bytes, syncs } = wal.stats();
    await wal.append(rec('k', 10));
    await wal.append(rec('k', 9, '{"stale":true}'));
    expect(wal.stats()).toMatchObject({ bytes, syncs, pendingRecords: 1 });
    await wal.close();
    const { wal: reopened, recovered } = await WriteAheadLog.open(syncOptions(dir));
    expect(recovered).toEqual([rec('k', 10)]);
    await reopened.close();
  });

  it('rejects a malformed record without logging anything', async () => {
    const dir = await tempDir();
    const { wal } = await WriteAheadLog.open(syncOptions(dir));
    await expect(wal.append(rec('k', 2 ** 53))).rejects.toThrow(WriteBackValidationError);
    await expect(wal.append({ key: 'k', json: '1', version: 1, rank: 7 })).rejects.toThrow(/rank/);
    expect(wal.stats()).toMatchObject({ bytes: 0, pendingRecords: 0 });
    await wal.close();
  });

  it('flushes what is queued on close, then rejects appends', async () => {
    const dir = await tempDir();
    const { wal } = await WriteAheadLog.open(syncOptions(dir));
    const appended = wal.append(rec('last', 1));
    const closed = wal.close();
    await expect(appended).resolves.toBeUndefined();
    await closed;
    await expect(wal.append(rec('after', 2))).rejects.toThrow(WriteBackClosedError);
    await expect(wal.close()).resolves.toBeUndefined();
    const { wal: reopened, recovered } = await WriteAheadLog.open(syncOptions(dir));
    expect(recovered).toEqual([rec('last', 1)]);
    await reopened.close();
  });

  it('fails the waiting appends with WalIoError when the write fails (ENOSPC mocked)', async () => {
    const dir = await tempDir();
    const logger = captureLogger();
    const { wal } = await WriteAheadLog.open(syncOptions(dir, { logger }));
    vi.spyOn(fs, 'writeSync').mockImplementationOnce(() => {
      throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    });
    syncBuiltinESMExports();
    const results = await Promise.allSettled([wal.append(rec('a', 1)), wal.append(rec('b', 2))]);
    expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason).toBeInstanceOf(WalIoError);
    expect((results[0] as PromiseRejectedResult).reason.message).toMatch(/write of .*wal-000000000001\.log failed: ENOSPC/);
    await expect(wal.append(rec('c', 3))).rejects.toThrow(WalIoError);
    expect(wal.stats().syncs).toBe(0);
    await wal.close();
  });

  it('fails every waiting and later append once an fdatasync fails (fdatasync mocked to fail)', async () => {
    const dir = await tempDir();
    const logger = captureLogger();
    const { wal } = await WriteAheadLog.open(syncOptions(dir, { logger }));
    const proto = await fileHandlePrototype(dir);
    vi.spyOn(proto, 'datasync').mockRejectedValueOnce(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }));
    const results = await Promise.allSettled([wal.append(rec('a', 1)), wal.append(rec('b', 2))]);
    expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason).toBeInstanceOf(WalIoError);
    expect((results[0] as PromiseRejectedResult).reason.message).toMatch(/fdatasync of .*wal-000000000001\.log failed: EIO/);
    await expect(wal.append(rec('c', 3))).rejects.toThrow(WalIoError);
    expect(logger.errors).toHaveLength(1);
    await wal.close();
  });
});
