import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32, crc32Table } from '../../../src/write-back/wal/crc32.js';
import {
  encodeRecord,
  encodeRecordToBuffer,
  invalidRecordReason,
  maxEncodedBytes,
  readRecord,
  RECORD_HEADER_BYTES,
  type WalRecord,
} from '../../../src/write-back/wal/wal-codec.js';

const MAX_VERSION = Number.MAX_SAFE_INTEGER; // 2^53 - 1

function roundTrip(record: WalRecord): WalRecord {
  const buf = encodeRecordToBuffer(record);
  const result = readRecord(buf, 0, buf.length);
  if (!result.ok) throw new Error(result.reason);
  expect(result.end).toBe(buf.length);
  return result.record;
}

describe('crc32', () => {
  it('matches the standard check value and the native implementation', () => {
    const check = Buffer.from('123456789');
    expect(crc32(check)).toBe(0xcbf43926);
    expect(crc32Table(check)).toBe(0xcbf43926);
    for (const size of [0, 1, 7, 64, 1000]) {
      const data = randomBytes(size);
      expect(crc32Table(data)).toBe(zlib.crc32(data));
    }
  });
});

describe('WAL record codec', () => {
  it.each<[string, WalRecord]>([
    ['a plain record', { key: 'user:1', json: '{"name":"Ada"}', version: 1_764_130_000_000_000, rank: 1 }],
    ['a unicode key and value', { key: 'ключ/键/🔑', json: '{"emoji":"😀","cjk":"漢字","accent":"é"}', version: 42, rank: 0 }],
    ['a tombstone', { key: 'gone', json: null, version: 7, rank: 2 }],
    ['an empty key and empty json string', { key: '', json: '', version: 0, rank: 1 }],
    ['version 2^32 - 1', { key: 'k', json: '1', version: 0xffff_ffff, rank: 1 }],
    ['version 2^32', { key: 'k', json: '1', version: 0x1_0000_0000, rank: 1 }],
    ['version 2^53 - 1', { key: 'k', json: '1', version: MAX_VERSION, rank: 2 }],
    ['version 2^53 - 2', { key: 'k', json: null, version: MAX_VERSION - 1, rank: 0 }],
  ])('round-trips %s', (_name, record) => {
    expect(roundTrip(record)).toEqual(record);
  });

  it('round-trips every rank, with and without a value', () => {
    for (const rank of [0, 1, 2]) {
      for (const json of ['{"x":1}', null]) {
        expect(roundTrip({ key: `r${rank}`, json, version: 1000 + rank, rank })).toEqual({
          key: `r${rank}`,
          json,
          version: 1000 + rank,
          rank,
        });
      }
    }
  });

  it('never writes past maxEncodedBytes, even for 3-byte UTF-8 characters', () => {
    const record = { key: '€'.repeat(100), json: JSON.stringify('漢'.repeat(1000)), version: 1, rank: 1 };
    const buf = Buffer.alloc(maxEncodedBytes(record) + 16, 0xee);
    const end = encodeRecord(record, buf, 16);
    expect(end).toBeLessThanOrEqual(16 + maxEncodedBytes(record));
    expect(buf.subarray(end).every((byte) => byte === 0xee)).toBe(true);
    const result = readRecord(buf, 16, end);
    expect(result.ok && result.record).toEqual(record);
  });

  it('frames the payload as [u32 length][u32 crc32][payload]', () => {
    const buf = encodeRecordToBuffer({ key: 'k', json: '{}', version: 5, rank: 1 });
    const length = buf.readUInt32LE(0);
    expect(length).toBe(buf.length - RECORD_HEADER_BYTES);
    expect(buf.readUInt32LE(4)).toBe(zlib.crc32(buf.subarray(RECORD_HEADER_BYTES)));
  });

  it('detects a flipped bit, a short buffer and an impossible length', () => {
    const good = encodeRecordToBuffer({ key: 'key', json: '{"a":1}', version: 99, rank: 1 });

    const flipped = Buffer.from(good);
    flipped[flipped.length - 2]! ^= 0x01;
    expect(readRecord(flipped, 0, flipped.length)).toMatchObject({ ok: false, short: false, reason: 'checksum mismatch' });

    expect(readRecord(good, 0, good.length - 1)).toMatchObject({ ok: false, short: true });
    expect(readRecord(good, 0, 5)).toMatchObject({ ok: false, short: true });

    const tiny = Buffer.from(good);
    tiny.writeUInt32LE(3, 0);
    expect(readRecord(tiny, 0, tiny.length)).toMatchObject({ ok: false, short: false });
  });

  it('rejects records it cannot log faithfully', () => {
    expect(invalidRecordReason({ key: 'k', json: '1', version: 1, rank: 1 })).toBeUndefined();
    expect(invalidRecordReason({ key: 'k', json: '1', version: 2 ** 53, rank: 1 })).toMatch(/version/);
    expect(invalidRecordReason({ key: 'k', json: '1', version: -1, rank: 1 })).toMatch(/version/);
    expect(invalidRecordReason({ key: 'k', json: '1', version: 1.5, rank: 1 })).toMatch(/version/);
    expect(invalidRecordReason({ key: 'k', json: '1', version: Number.NaN, rank: 1 })).toMatch(/version/);
    expect(invalidRecordReason({ key: 'k', json: '1', version: 1, rank: 3 })).toMatch(/rank/);
    expect(invalidRecordReason({ key: 1 as unknown as string, json: '1', version: 1, rank: 1 })).toMatch(/key/);
    expect(invalidRecordReason({ key: 'k', json: undefined as unknown as string, version: 1, rank: 1 })).toMatch(/json/);
  });
});
