import { open, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WalCorruptionError, WriteAheadLog, type WalRecord } from '../../../src/write-back/wal/index.js';
import { encodeRecordToBuffer } from '../../../src/write-back/wal/wal-codec.js';
import { WriteBackError } from '../../../src/write-back/write-back.errors.js';
import { tempDir } from '../../support/temp-dir.js';
import { byKey, captureLogger, rec, segmentFiles, syncOptions } from '../../support/wal.js';

const five = [rec('a', 1), rec('b', 2), rec('c', 3, null), rec('d', 4, '{"unicode":"ü✓"}', 0), rec('e', 5, '[]', 2)];

/** Writes `records` one after another into a fresh log, closes it and returns the segment file. */
async function writeLog(dir: string, records: WalRecord[]): Promise<string> {
  const { wal } = await WriteAheadLog.open(syncOptions(dir));
  for (const record of records) await wal.append(record);
  await wal.close();
  const files = await segmentFiles(dir);
  expect(files).toHaveLength(1);
  return join(dir, files[0]!);
}

/** Overwrites bytes of `file` at `position`. */
async function writeAt(file: string, position: number, data: Buffer): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    await handle.write(data, 0, data.length, position);
  } finally {
    await handle.close();
  }
}

const offsetOf = (records: WalRecord[], i: number): number =>
  records.slice(0, i).reduce((sum, record) => sum + encodeRecordToBuffer(record).length, 0);

describe('WriteAheadLog recovery', () => {
  it('starts empty in a new directory, creating it', async () => {
    const dir = join(await tempDir(), 'nested', 'wal');
    const { wal, recovered } = await WriteAheadLog.open(syncOptions(dir));
    expect(recovered).toEqual([]);
    expect(wal.stats()).toEqual({ bytes: 0, syncs: 0, segments: 1, pendingRecords: 0 });
    await wal.close();
    expect(await segmentFiles(dir)).toEqual(['wal-000000000001.log']);
  });

  it('replays every acknowledged record, tombstones included, and counts them as pending', async () => {
    const dir = await tempDir();
    await writeLog(dir, five);
    const logger = captureLogger();
    const { wal, recovered } = await WriteAheadLog.open(syncOptions(dir, { logger }));
    expect(recovered).toEqual(five);
    expect(wal.stats().pendingRecords).toBe(5);
    expect(logger.warnings).toEqual([]);
    expect(logger.infos.join()).toMatch(/Replayed 5 records/);
    await wal.close();
  });

  it('truncates a record cut short at the tail, warns, and keeps every earlier record', async () => {
    const dir = await tempDir();
    const file = await writeLog(dir, five);
    const lastStart = offsetOf(five, 4);
    await truncate(file, lastStart + 10);

    const logger = captureLogger();
    const { wal, recovered } = await WriteAheadLog.open(syncOptions(dir, { logger }));
    expect(recovered).toEqual(five.slice(0, 4));
    expect(logger.warnings).toHaveLength(1);
    expect(logger.warnings[0]).toContain(file);
    expect(logger.warnings[0]).toContain(`byte ${lastStart}`);
    expect((await stat(file)).size).toBe(lastStart);
    await wal.close();

    // The cut is durable: the next start finds a clean segment (no longer the newest one).
    const again = captureLogger();
    const reopened = await WriteAheadLog.open(syncOptions(dir, { logger: again }));
    expect(reopened.recovered).toEqual(five.slice(0, 4));
    expect(again.warnings).toEqual([]);
    await reopened.wal.close();
  });

  it('truncates a record whose write was cut short inside the zero-filled file', async () => {
    const dir = await tempDir();
    const file = await writeLog(dir, five);
    const lastStart = offsetOf(five, 4);
    // The crash persisted the first 10 bytes of the last record; the rest of its bytes are still zeros.
    await writeAt(file, lastStart + 10, Buffer.alloc(offsetOf(five, 5) - lastStart - 10));

    const logger = captureLogger();
    const { wal, recovered } = await WriteAheadLog.open(syncOptions(dir, { logger }));
    expect(recovered).toEqual(five.slice(0, 4));
    expect(logger.warnings).toHaveLength(1);
    expect(logger.warnings[0]).toContain(`byte ${lastStart}`);
    expect((await stat(file)).size).toBe(lastStart);
    await wal.close();
  });

  it('drops garbage written after the last record', async () => {
    const dir = await tempDir();
    const file = await writeLog(dir, five);
    const size = offsetOf(five, 5);
    await writeAt(file, size, Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09]));

    const logger = captureLogger();
    const { wal, recovered } = await WriteAheadLog.open(syncOptions(dir, { logger }));
    expect(recovered).toEqual(five);
    expect(logger.warnings[0]).toMatch(/Torn record/);
    expect((await stat(file)).size).toBe(size);
    await wal.close();
  });

  it('drops a last record whose checksum does not match', async () => {
    const dir = await tempDir();
    const file = await writeLog(dir, five);
    const bytes = await readFile(file);
    bytes[offsetOf(five, 5) - 1]! ^= 0x20;
    await writeFile(file, bytes);

    const logger = captureLogger();
    const { wal, recovered } = await WriteAheadLog.open(syncOptions(dir, { logger }));
    expect(recovered).toEqual(five.slice(0, 4));
    expect(logger.warnings[0]).toMatch(/checksum mismatch/);
    await wal.close();
  });

  it('refuses to start on a corrupt record in the middle, naming the file and byte offset', async () => {
    const dir = await tempDir();
    const file = await writeLog(dir, five);
    const bytes = await readFile(file);
    const at = offsetOf(five, 2);
    bytes[at + 10]! ^= 0x01;
    await writeFile(file, bytes);

    const error = await WriteAheadLog.open(syncOptions(dir)).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(WalCorruptionError);
    expect(error).toBeInstanceOf(WriteBackError);
    expect((error as Error).message).toContain(file);
    expect((error as Error).message).toContain(`byte ${at}`);
    expect(error).toMatchObject({ file, offset: at });
  });

  it('with corruption "skip", recovers the records around a corrupt one and warns', async () => {
    const dir = await tempDir();
    const file = await writeLog(dir, five);
    const bytes = await readFile(file);
    bytes[offsetOf(five, 2) + 10]! ^= 0x01;
    await writeFile(file, bytes);

    const logger = captureLogger();
    const { wal, recovered } = await WriteAheadLog.open(syncOptions(dir, { logger, corruption: 'skip' }));
    expect(recovered).toEqual([five[0], five[1], five[3], five[4]]);
    expect(logger.warnings).toHaveLength(1);
    expect(logger.warnings[0]).toContain(`byte ${offsetOf(five, 2)}`);
    await wal.close();
  });

  it('refuses a torn record at the end of an older segment', async () => {
    const dir = await tempDir();
    const file = await writeLog(dir, five);
    // A second start adds a newer segment, so `file` is no longer the newest one.
    const { wal } = await WriteAheadLog.open(syncOptions(dir));
    await wal.append(rec('f', 6));
    await wal.close();
    await truncate(file, offsetOf(five, 5) - 3);

    await expect(WriteAheadLog.open(syncOptions(dir))).rejects.toThrow(WalCorruptionError);
  });

  it('recovers the highest version of each key across segments', async () => {
    const dir = await tempDir();
    const options = syncOptions(dir, { segmentBytes: 60 });
    const { wal } = await WriteAheadLog.open(options);
    const written = [
      rec('x', 10),
      rec('y', 11),
      rec('x', 12, '{"x":"second"}'),
      rec('z', 13, '{"z":1}', 0),
      rec('y', 14, null, 2),
      rec('x', 15, '{"x":"third"}', 2),
      rec('w', 16),
    ];
    for (const record of written) await wal.append(record);
    await wal.close();
    expect((await segmentFiles(dir)).length).toBeGreaterThan(2);

    const { wal: reopened, recovered } = await WriteAheadLog.open(options);
    // Newest record per key, in the log order of those records.
    expect(recovered).toEqual([written[3], written[4], written[5], written[6]]);
    expect(byKey(recovered).map((record) => [record.key, record.version])).toEqual([
      ['w', 16],
      ['x', 15],
      ['y', 14],
      ['z', 13],
    ]);
    expect(reopened.stats().pendingRecords).toBe(4);
    await reopened.close();
  });

  it('resumes numbering after the newest segment and never reuses a file', async () => {
    const dir = await tempDir();
    await writeLog(dir, [rec('a', 1)]);
    const { wal } = await WriteAheadLog.open(syncOptions(dir));
    await wal.append(rec('b', 2));
    await wal.close();
    expect(await segmentFiles(dir)).toEqual(['wal-000000000001.log', 'wal-000000000002.log']);
    const { wal: third, recovered } = await WriteAheadLog.open(syncOptions(dir));
    expect(recovered).toEqual([rec('a', 1), rec('b', 2)]);
    await third.close();
  });

  it('leaves files that are not segments alone', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'README.txt'), 'operator notes');
    await writeFile(join(dir, 'wal-1.log'), 'not a segment name');
    const { wal, recovered } = await WriteAheadLog.open(syncOptions(dir));
    expect(recovered).toEqual([]);
    await wal.close();
    expect((await readdir(dir)).sort()).toEqual(['README.txt', 'wal-000000000001.log', 'wal-1.log']);
  });
});
