import { describe, expect, it } from 'vitest';
import { encodeRecordToBuffer, type WalRecord } from '../../../src/write-back/wal/wal-codec.js';
import { scanSegment } from '../../../src/write-back/wal/wal-reader.js';
import { WalCorruptionError } from '../../../src/write-back/write-back.errors.js';
import { rec } from '../../support/wal.js';

const records: WalRecord[] = Array.from({ length: 6 }, (_, i) => rec(`key-${i}`, 100 + i));
const encoded = records.map(encodeRecordToBuffer);
const segment = Buffer.concat(encoded);
/** Byte offset of record `i` in `segment`. */
const offsetOf = (i: number): number => encoded.slice(0, i).reduce((sum, buf) => sum + buf.length, 0);

const file = '/wal/wal-000000000007.log';

describe('scanSegment', () => {
  it('reads every record of an intact segment', () => {
    const scan = scanSegment(segment, { file, last: true, corruption: 'fail' });
    expect(scan.records).toEqual(records);
    expect(scan.keepBytes).toBe(segment.length);
    expect(scan.tornTail).toBeUndefined();
  });

  it('treats a record cut short at the end of the newest segment as a torn tail', () => {
    const cut = segment.subarray(0, offsetOf(5) + 11);
    const scan = scanSegment(cut, { file, last: true, corruption: 'fail' });
    expect(scan.records).toEqual(records.slice(0, 5));
    expect(scan.keepBytes).toBe(offsetOf(5));
    expect(scan.tornTail).toMatchObject({ offset: offsetOf(5), droppedRecords: 0 });
    expect(scan.tornTail!.reason).toMatch(/past the end/);
  });

  it('treats a partial header at the end as a torn tail', () => {
    const cut = segment.subarray(0, offsetOf(5) + 3);
    const scan = scanSegment(cut, { file, last: true, corruption: 'fail' });
    expect(scan.records).toHaveLength(5);
    expect(scan.keepBytes).toBe(offsetOf(5));
  });

  it('treats a bad checksum on the last record as a torn tail', () => {
    const damaged = Buffer.from(segment);
    damaged[damaged.length - 3]! ^= 0xff;
    const scan = scanSegment(damaged, { file, last: true, corruption: 'fail' });
    expect(scan.records).toEqual(records.slice(0, 5));
    expect(scan.tornTail).toMatchObject({ offset: offsetOf(5), reason: 'checksum mismatch' });
  });

  it.each([
    ['0xff bytes', Buffer.alloc(40, 0xff)],
    ['text', Buffer.from('this is not a record, just some trailing garbage bytes')],
    ['text after zeros', Buffer.concat([Buffer.alloc(100), Buffer.from('garbage')])],
  ])('treats trailing garbage (%s) as a torn tail', (_name, garbage) => {
    const scan = scanSegment(Buffer.concat([segment, garbage]), { file, last: true, corruption: 'fail' });
    expect(scan.records).toEqual(records);
    expect(scan.keepBytes).toBe(segment.length);
    expect(scan.tornTail?.offset).toBe(segment.length);
  });

  it.each([true, false])('reads the zeros of a preallocated file after the records as the end of the data (newest: %s)', (last) => {
    const preallocated = Buffer.concat([segment, Buffer.alloc(200_000)]);
    const scan = scanSegment(preallocated, { file, last, corruption: 'fail' });
    expect(scan.records).toEqual(records);
    expect(scan.keepBytes).toBe(segment.length);
    expect(scan.tornTail).toBeUndefined();
    expect(scan.skipped).toEqual([]);
    const empty = scanSegment(Buffer.alloc(4096), { file, last, corruption: 'fail' });
    expect(empty).toEqual({ records: [], keepBytes: 0, skipped: [] });
  });

  it('treats a record cut short inside a preallocated file (the rest still zeros) as a torn tail', () => {
    const cut = Buffer.concat([segment.subarray(0, offsetOf(5) + 20), Buffer.alloc(1_000_000)]);
    const scan = scanSegment(cut, { file, last: true, corruption: 'fail' });
    expect(scan.records).toEqual(records.slice(0, 5));
    expect(scan.tornTail).toMatchObject({ offset: offsetOf(5), reason: 'checksum mismatch', droppedRecords: 0 });
  });

  it('fails on bytes after the zero tail of an older segment', () => {
    const damaged = Buffer.concat([segment, Buffer.alloc(600), Buffer.from('garbage')]);
    expect(() => scanSegment(damaged, { file, last: false, corruption: 'fail' })).toThrow(WalCorruptionError);
  });

  it('treats a zero-filled sector before later records as a torn write and drops what follows', () => {
    // A crash persisted a later page of an unsynced write but not an earlier one.
    const torn = Buffer.concat([segment, Buffer.alloc(1024), encodeRecordToBuffer(rec('late', 1))]);
    const scan = scanSegment(torn, { file, last: true, corruption: 'fail' });
    expect(scan.records).toEqual(records);
    expect(scan.tornTail).toMatchObject({ offset: segment.length, droppedRecords: 1 });
  });

  it('fails on a damaged record with readable records after it, naming the file and offset', () => {
    const damaged = Buffer.from(segment);
    damaged[offsetOf(2) + 12]! ^= 0x40;
    let error: unknown;
    try {
      scanSegment(damaged, { file, last: true, corruption: 'fail' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(WalCorruptionError);
    expect(error).toMatchObject({ file, offset: offsetOf(2), reason: 'checksum mismatch' });
    expect((error as Error).message).toContain(file);
    expect((error as Error).message).toContain(`byte ${offsetOf(2)}`);
  });

  it('fails on a short record at the end of an older segment: only the newest can be torn', () => {
    const cut = segment.subarray(0, offsetOf(5) + 11);
    expect(() => scanSegment(cut, { file, last: false, corruption: 'fail' })).toThrow(WalCorruptionError);
  });

  it('with corruption "skip", passes over damaged records and keeps the rest', () => {
    const damaged = Buffer.from(segment);
    damaged[offsetOf(1) + 12]! ^= 0x40; // payload of record 1
    damaged.writeUInt32LE(0x7fff_ffff, offsetOf(3)); // length of record 3
    const scan = scanSegment(damaged, { file, last: false, corruption: 'skip' });
    expect(scan.records).toEqual([records[0], records[2], records[4], records[5]]);
    expect(scan.skipped).toEqual([
      { offset: offsetOf(1), bytes: encoded[1]!.length, reason: 'checksum mismatch' },
      { offset: offsetOf(3), bytes: encoded[3]!.length, reason: expect.stringMatching(/past the end/) },
    ]);
    expect(scan.keepBytes).toBe(damaged.length);
  });

  it('with corruption "skip", still cuts off the torn tail of the newest segment', () => {
    const damaged = Buffer.from(segment.subarray(0, offsetOf(5) + 11));
    damaged[offsetOf(1) + 12]! ^= 0x40;
    const scan = scanSegment(damaged, { file, last: true, corruption: 'skip' });
    expect(scan.records).toEqual([records[0], records[2], records[3], records[4]]);
    expect(scan.keepBytes).toBe(offsetOf(5));
  });
});
