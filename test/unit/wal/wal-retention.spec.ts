import { existsSync } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WalIoError, WriteAheadLog } from '../../../src/write-back/wal/index.js';
import { encodeRecordToBuffer } from '../../../src/write-back/wal/wal-codec.js';
import { scanSegment } from '../../../src/write-back/wal/wal-reader.js';
import { WalRetention, WalSegment } from '../../../src/write-back/wal/wal-retention.js';
import { tempDir } from '../../support/temp-dir.js';
import { sleep, until } from '../../support/wait.js';
import { rec, segmentFiles, syncOptions } from '../../support/wal.js';

const name = (id: number): string => `wal-${String(id).padStart(12, '0')}.log`;

describe('WalRetention', () => {
  function setup() {
    const deleted: number[] = [];
    const retention = new WalRetention((segment) => deleted.push(segment.id));
    const segments = [1, 2, 3, 4].map((id) => new WalSegment(id, name(id)));
    return { deleted, retention, s: segments };
  }

  it('counts the newest unsettled record of each key as pending', () => {
    const { retention, s } = setup();
    expect(retention.track('a', 1, s[0]!)).toBe(true);
    expect(retention.track('a', 2, s[0]!)).toBe(true);
    expect(retention.track('b', 3, s[0]!)).toBe(true);
    expect(retention.pending).toBe(2);
    retention.settle('a', 1); // an older version: a@2 still needs the log
    expect(retention.pending).toBe(2);
    retention.settle('a', 2);
    retention.settle('unknown', 9);
    expect(retention.pending).toBe(1);
    expect(retention.track('a', 3, s[0]!)).toBe(true);
    expect(retention.pending).toBe(2);
  });

  it('refuses records at or below the newest version of their key', () => {
    const { retention, s } = setup();
    retention.track('a', 5, s[0]!);
    expect(retention.track('a', 5, s[1]!)).toBe(false);
    expect(retention.track('a', 4, s[1]!)).toBe(false);
    expect(retention.pending).toBe(1);
  });

  it('deletes a sealed segment once nothing in it is needed, never an unsealed one', () => {
    const { retention, s, deleted } = setup();
    retention.track('a', 1, s[0]!);
    retention.settle('a', 1);
    expect(deleted).toEqual([]); // still being written
    retention.seal(s[0]!);
    expect(deleted).toEqual([1]);
  });

  it('deletes a segment whose records are all superseded by later segments', () => {
    const { retention, s, deleted } = setup();
    retention.track('a', 1, s[0]!);
    retention.track('b', 2, s[0]!);
    retention.seal(s[0]!);
    retention.track('a', 3, s[1]!);
    retention.track('b', 4, s[1]!);
    // Until the newer records are fdatasynced, a crash could lose them: the older ones stay.
    retention.markDurable(retention.lastSequence - 1);
    expect(deleted).toEqual([]);
    retention.markDurable(retention.lastSequence);
    expect(deleted).toEqual([1]);
    expect(retention.pending).toBe(2);
  });

  it('needs no durable successor for a record Postgres already has', () => {
    const { retention, s, deleted } = setup();
    retention.track('a', 1, s[0]!);
    retention.seal(s[0]!);
    retention.settle('a', 1);
    expect(deleted).toEqual([1]);
    retention.track('a', 2, s[1]!);
    expect(retention.pending).toBe(1);
  });

  it('keeps a settled segment while an earlier one still holds an older record of its keys', () => {
    const { retention, s, deleted } = setup();
    retention.track('k', 1, s[0]!);
    retention.track('x', 2, s[0]!);
    retention.seal(s[0]!);
    retention.track('k', 3, s[1]!);
    retention.seal(s[1]!);
    retention.markDurable(retention.lastSequence);
    retention.settle('k', 3);
    // Deleting segment 2 now would let a restart replay k@1 from segment 1 as the latest value.
    expect(deleted).toEqual([]);
    retention.settle('x', 2);
    expect(deleted).toEqual([1, 2]);
  });

  it('deletes settled segments out of order when they share no keys', () => {
    const { retention, s, deleted } = setup();
    retention.track('a', 1, s[0]!);
    retention.seal(s[0]!);
    retention.track('b', 2, s[1]!);
    retention.seal(s[1]!);
    retention.settle('b', 2);
    expect(deleted).toEqual([2]);
    expect(retention.pending).toBe(1);
  });

  it('on replay, makes the segment of the newest record outlive a later segment with an older record', () => {
    const { retention, s, deleted } = setup();
    expect(retention.trackReplayed('k', 5, s[0]!)).toBe(true);
    expect(retention.trackReplayed('k', 3, s[1]!)).toBe(false);
    expect(retention.trackReplayed('y', 4, s[1]!)).toBe(true);
    retention.seal(s[0]!);
    retention.seal(s[1]!);
    retention.settle('k', 5);
    expect(deleted).toEqual([]); // segment 2 still holds k@3 and y
    retention.settle('y', 4);
    expect(deleted).toEqual([2, 1]);
  });
});

describe('WriteAheadLog segments', () => {
  it('rotates to a new segment once the active one passes segmentBytes', async () => {
    const dir = await tempDir();
    const recordBytes = encodeRecordToBuffer(rec('k0', 100)).length;
    const { wal } = await WriteAheadLog.open(syncOptions(dir, { segmentBytes: 3 * recordBytes }));
    for (let i = 0; i < 10; i++) await wal.append(rec(`k${i}`, 100 + i));
    const files = await segmentFiles(dir);
    expect(files).toEqual([name(1), name(2), name(3), name(4)]);
    // Every file is zero-filled to segmentBytes when created; the records fill it from the start.
    const sizes = await Promise.all(files.map(async (file) => (await stat(join(dir, file))).size));
    expect(sizes).toEqual([3 * recordBytes, 3 * recordBytes, 3 * recordBytes, 3 * recordBytes]);
    const scans = await Promise.all(
      files.map(async (file, i) => scanSegment(await readFile(join(dir, file)), { file, last: i === 3, corruption: 'fail' })),
    );
    expect(scans.map((scan) => scan.records.length)).toEqual([3, 3, 3, 1]);
    expect(scans.map((scan) => scan.keepBytes)).toEqual([3 * recordBytes, 3 * recordBytes, 3 * recordBytes, recordBytes]);
    expect(wal.stats()).toMatchObject({ segments: 4, bytes: 10 * recordBytes, pendingRecords: 10 });
    await wal.close();
  });

  it('zero-fills the next segment ahead, once the active one is half full, and starts it from that file', async () => {
    const dir = await tempDir();
    const recordBytes = encodeRecordToBuffer(rec('k0', 100)).length;
    const segmentBytes = 4 * recordBytes;
    const { wal } = await WriteAheadLog.open(syncOptions(dir, { segmentBytes }));
    const prepared = join(dir, 'wal-next.tmp');
    await wal.append(rec('k0', 100));
    expect(existsSync(prepared)).toBe(false);
    await wal.append(rec('k1', 101));
    // Half full: the next file is being prepared in the background.
    await until(async () => existsSync(prepared) && (await stat(prepared)).size === segmentBytes, 2000);
    expect((await readFile(prepared)).every((byte) => byte === 0)).toBe(true);
    const inode = (await stat(prepared)).ino;
    for (let i = 2; i < 6; i++) await wal.append(rec(`k${i}`, 100 + i));
    expect(await segmentFiles(dir)).toEqual([name(1), name(2)]);
    expect((await stat(join(dir, name(2)))).ino).toBe(inode);
    // Segment 2 is half full in turn: the one after it is being prepared.
    await until(() => existsSync(prepared), 2000);
    await wal.close();
    // Closing removes a prepared file that is not a segment yet.
    expect(await readdir(dir)).not.toContain('wal-next.tmp');
    const { wal: reopened, recovered } = await WriteAheadLog.open(syncOptions(dir, { segmentBytes }));
    expect(recovered.map((record) => record.key)).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'k5']);
    await reopened.close();
  });

  it('never overwrites an existing segment file: rotating onto one fails the log with WalIoError', async () => {
    const dir = await tempDir();
    const recordBytes = encodeRecordToBuffer(rec('k0', 100)).length;
    const { wal } = await WriteAheadLog.open(syncOptions(dir, { segmentBytes: recordBytes }));
    await wal.append(rec('k0', 100));
    // Something else wrote the next segment's file.
    await writeFile(join(dir, name(2)), 'not ours');
    const error = await wal.append(rec('k1', 101)).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(WalIoError);
    expect((error as Error).message).toMatch(/creation of .*wal-000000000002\.log failed: the segment file exists already/);
    expect(await readFile(join(dir, name(2)), 'utf8')).toBe('not ours');
    await wal.close();
  });

  it('removes a prepared file left by a crash and never replays it', async () => {
    const dir = await tempDir();
    const { wal } = await WriteAheadLog.open(syncOptions(dir));
    await wal.append(rec('a', 1));
    await wal.close();
    // A half-prepared next segment holding bytes that look like a record.
    await writeFile(join(dir, 'wal-next.tmp'), encodeRecordToBuffer(rec('ghost', 99)));
    const { wal: reopened, recovered } = await WriteAheadLog.open(syncOptions(dir));
    expect(recovered).toEqual([rec('a', 1)]);
    expect(await readdir(dir)).not.toContain('wal-next.tmp');
    await reopened.close();
  });

  it('rotates in the middle of a group of concurrent appends and loses none', async () => {
    const dir = await tempDir();
    const { wal } = await WriteAheadLog.open(syncOptions(dir, { segmentBytes: 200 }));
    const records = Array.from({ length: 40 }, (_, i) => rec(`key-${i}`, i + 1));
    await Promise.all(records.map((record) => wal.append(record)));
    expect((await segmentFiles(dir)).length).toBeGreaterThan(3);
    await wal.close();
    const { wal: reopened, recovered } = await WriteAheadLog.open(syncOptions(dir, { segmentBytes: 200 }));
    expect(recovered).toEqual(records);
    await reopened.close();
  });

  it('deletes fully settled segments but keeps the active one and those with unsettled records', async () => {
    const dir = await tempDir();
    // segmentBytes 1: every record starts a segment of its own.
    const { wal } = await WriteAheadLog.open(syncOptions(dir, { segmentBytes: 1 }));
    await wal.append(rec('a', 1));
    await wal.append(rec('b', 2));
    await wal.append(rec('c', 3, null));
    await wal.append(rec('d', 4));
    expect(await segmentFiles(dir)).toEqual([name(1), name(2), name(3), name(4)]);

    wal.settle('b', 2);
    wal.settle('c', 3);
    wal.settle('d', 4); // in the active segment: kept
    await until(async () => (await segmentFiles(dir)).length === 2, 2000);
    expect(await segmentFiles(dir)).toEqual([name(1), name(4)]);
    expect(wal.stats()).toMatchObject({ segments: 2, pendingRecords: 1 });

    wal.settle('a', 0); // older than what is logged: keeps it
    await sleep(20);
    expect(await segmentFiles(dir)).toEqual([name(1), name(4)]);
    await wal.close();
  });

  it('deletes segments whose records were all superseded by a later segment', async () => {
    const dir = await tempDir();
    const { wal } = await WriteAheadLog.open(syncOptions(dir, { segmentBytes: 1 }));
    await wal.append(rec('a', 1));
    await wal.append(rec('a', 2));
    await wal.append(rec('b', 3));
    await until(async () => !(await segmentFiles(dir)).includes(name(1)), 2000);
    expect(await segmentFiles(dir)).toEqual([name(2), name(3)]);
    expect(wal.stats().pendingRecords).toBe(2);
    await wal.close();
    const { wal: reopened, recovered } = await WriteAheadLog.open(syncOptions(dir));
    expect(recovered).toEqual([rec('a', 2), rec('b', 3)]);
    await reopened.close();
  });

  it('keeps a settled segment while an older segment could replay a stale value of its keys', async () => {
    const dir = await tempDir();
    const recordBytes = encodeRecordToBuffer(rec('k', 1)).length;
    const { wal } = await WriteAheadLog.open(syncOptions(dir, { segmentBytes: 2 * recordBytes }));
    await wal.append(rec('k', 1)); // segment 1
    await wal.append(rec('x', 2)); // segment 1
    await wal.append(rec('k', 3)); // segment 2
    await wal.append(rec('y', 4)); // segment 2
    await wal.append(rec('z', 5)); // segment 3, active
    wal.settle('k', 3);
    wal.settle('y', 4);
    await sleep(20);
    expect(await segmentFiles(dir)).toEqual([name(1), name(2), name(3)]);
    await wal.close();

    // A restart now must not see k@1 as the latest value of k.
    const reopened = await WriteAheadLog.open(syncOptions(dir, { segmentBytes: 2 * recordBytes }));
    expect(reopened.recovered).toEqual([rec('x', 2), rec('k', 3), rec('y', 4), rec('z', 5)]);
    reopened.wal.settle('x', 2);
    reopened.wal.settle('k', 3);
    reopened.wal.settle('y', 4);
    await until(async () => (await segmentFiles(dir)).length === 2, 2000);
    expect(await segmentFiles(dir)).toEqual([name(3), name(4)]);
    await reopened.wal.close();
  });

  it('after settling and deleting, a restart replays only the unsettled records', async () => {
    const dir = await tempDir();
    const { wal } = await WriteAheadLog.open(syncOptions(dir, { segmentBytes: 1 }));
    const records = [rec('a', 1), rec('b', 2), rec('c', 3), rec('d', 4, null), rec('e', 5)];
    for (const record of records) await wal.append(record);
    wal.settle('a', 1);
    wal.settle('c', 3);
    wal.settle('d', 4);
    await wal.close();
    expect(await segmentFiles(dir)).toEqual([name(2), name(5)]);

    const { wal: reopened, recovered } = await WriteAheadLog.open(syncOptions(dir));
    expect(recovered).toEqual([rec('b', 2), rec('e', 5)]);
    expect(reopened.stats().pendingRecords).toBe(2);
    reopened.settle('b', 2);
    reopened.settle('e', 5);
    await reopened.close();
    expect(reopened.stats()).toMatchObject({ pendingRecords: 0, segments: 1 });
    expect(await segmentFiles(dir)).toEqual([name(6)]);

    const { wal: third, recovered: none } = await WriteAheadLog.open(syncOptions(dir));
    expect(none).toEqual([]);
    await third.close();
    expect(await segmentFiles(dir)).toEqual([name(7)]);
  });
});
