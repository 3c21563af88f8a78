import { crc32 } from './crc32.js';

/** One write as the log stores it; the same shape as the flusher's `FlushItem`. */
export interface WalRecord {
  readonly key: string;
  /** The serialized value, or `null` for a delete (tombstone). */
  readonly json: string | null;
  /** Microseconds since the epoch; a non-negative integer below 2^53. */
  readonly version: number;
  /** 0 = high, 1 = normal, 2 = low. */
  readonly rank: number;
  /** `json` holds the key's pending deltas (increments, merge patches), not a value: see `WalDeltaState`. */
  readonly delta?: boolean;
}

/*
 * Record layout, little-endian:
 *   u32 payload length | u32 CRC-32 of the payload | payload
 * payload:
 *   u8 flags (bits 0-1 rank, bit 2 tombstone, bit 3 delta, bits 4-7 zero) | u32 version low | u32 version high
 *   | u32 key bytes | key (UTF-8) | u32 json bytes (0 for a tombstone) | json (UTF-8)
 */
export const RECORD_HEADER_BYTES = 8;
export const MIN_PAYLOAD_BYTES = 17;
const TOMBSTONE = 0x04;
const DELTA = 0x08;
const RANK_MASK = 0x03;
const TWO_POW_32 = 0x1_0000_0000;
/** High word limit: versions stay below 2^53. */
const VERSION_HIGH_LIMIT = 0x20_0000;

/** Why `record` cannot be logged, or undefined when it can. */
export function invalidRecordReason(record: WalRecord): string | undefined {
  if (typeof record !== 'object' || record === null) return 'a record must be an object';
  if (typeof record.key !== 'string') return 'key must be a string';
  if (record.json !== null && typeof record.json !== 'string') return 'json must be a string or null';
  if (record.delta === true && record.json === null) return 'a delta record needs its deltas in json';
  if (!Number.isSafeInteger(record.version) || record.version < 0) {
    return `version must be an integer in [0, 2^53), got ${String(record.version)}`;
  }
  if (record.rank !== 0 && record.rank !== 1 && record.rank !== 2) {
    return `rank must be 0, 1 or 2, got ${String(record.rank)}`;
  }
  return undefined;
}

/** Bytes `encodeRecord` may need for `record` (UTF-8 takes at most 3 bytes per UTF-16 unit). */
export function maxEncodedBytes(record: WalRecord): number {
  return RECORD_HEADER_BYTES + MIN_PAYLOAD_BYTES + 3 * (record.key.length + (record.json === null ? 0 : record.json.length));
}

/**
 * Writes `record` into `buf` at `offset` and returns the offset just past it. The caller guarantees
 * `maxEncodedBytes(record)` bytes of room and a valid record (see `invalidRecordReason`).
 */
export function encodeRecord(record: WalRecord, buf: Buffer, offset: number): number {
  const start = offset + RECORD_HEADER_BYTES;
  const { json, version } = record;
  buf[start] = record.rank | (json === null ? TOMBSTONE : 0) | (record.delta === true ? DELTA : 0);
  buf.writeUInt32LE(version % TWO_POW_32, start + 1);
  buf.writeUInt32LE(Math.floor(version / TWO_POW_32), start + 5);
  const keyBytes = buf.write(record.key, start + 13, 'utf8');
  buf.writeUInt32LE(keyBytes, start + 9);
  let end = start + 13 + keyBytes;
  const jsonBytes = json === null ? 0 : buf.write(json, end + 4, 'utf8');
  buf.writeUInt32LE(jsonBytes, end);
  end += 4 + jsonBytes;
  buf.writeUInt32LE(end - start, offset);
  buf.writeUInt32LE(crc32(buf.subarray(start, end)), offset + 4);
  return end;
}

/** A record decoded from a segment, or why the bytes at that offset are not one. */
export type ReadResult =
  | { readonly ok: true; readonly record: WalRecord; readonly end: number }
  | {
      readonly ok: false;
      readonly reason: string;
      /** The record claims more bytes than are left: what a write cut short by a crash leaves. */
      readonly short: boolean;
    };

/** Decodes the record starting at `offset`; `end` is the end of the valid data in `buf`. */
export function readRecord(buf: Buffer, offset: number, end: number): ReadResult {
  const left = end - offset;
  if (left < RECORD_HEADER_BYTES) {
    return { ok: false, short: true, reason: `${left} bytes left, fewer than a record header` };
  }
  const length = buf.readUInt32LE(offset);
  if (length < MIN_PAYLOAD_BYTES) {
    return { ok: false, short: false, reason: `record length ${length} is below the minimum of ${MIN_PAYLOAD_BYTES}` };
  }
  const start = offset + RECORD_HEADER_BYTES;
  const stop = start + length;
  if (stop > end) {
    return {
      ok: false,
      short: true,
      reason: `record of ${length} bytes runs past the end of the file (${left - RECORD_HEADER_BYTES} bytes left)`,
    };
  }
  if (crc32(buf.subarray(start, stop)) !== buf.readUInt32LE(offset + 4)) {
    return { ok: false, short: false, reason: 'checksum mismatch' };
  }
  const flags = buf[start]!;
  if (flags & ~(RANK_MASK | TOMBSTONE | DELTA) || (flags & RANK_MASK) === 3) {
    return { ok: false, short: false, reason: `unknown flags 0x${flags.toString(16)}` };
  }
  const high = buf.readUInt32LE(start + 5);
  if (high >= VERSION_HIGH_LIMIT) return { ok: false, short: false, reason: 'version beyond 2^53' };
  const version = high * TWO_POW_32 + buf.readUInt32LE(start + 1);
  const keyBytes = buf.readUInt32LE(start + 9);
  const keyEnd = start + 13 + keyBytes;
  if (keyEnd + 4 > stop) return { ok: false, short: false, reason: 'key length overruns the record' };
  const jsonBytes = buf.readUInt32LE(keyEnd);
  if (keyEnd + 4 + jsonBytes !== stop) return { ok: false, short: false, reason: 'field lengths do not add up' };
  const tombstone = (flags & TOMBSTONE) !== 0;
  if (tombstone && jsonBytes !== 0) return { ok: false, short: false, reason: 'tombstone carries a value' };
  const delta = (flags & DELTA) !== 0;
  if (delta && tombstone) return { ok: false, short: false, reason: 'a delta record cannot be a tombstone' };
  const record: WalRecord = {
    key: buf.toString('utf8', start + 13, keyEnd),
    json: tombstone ? null : buf.toString('utf8', keyEnd + 4, stop),
    version,
    rank: flags & RANK_MASK,
  };
  return { ok: true, end: stop, record: delta ? { ...record, delta: true } : record };
}

/** Encodes one record into a buffer of its own (tests and tools; the log encodes into its group buffer). */
export function encodeRecordToBuffer(record: WalRecord): Buffer {
  const buf = Buffer.allocUnsafe(maxEncodedBytes(record));
  return buf.subarray(0, encodeRecord(record, buf, 0));
}
