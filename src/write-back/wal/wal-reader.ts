import { WalCorruptionError } from '../write-back.errors.js';
import { readRecord, RECORD_HEADER_BYTES, type WalRecord } from './wal-codec.js';

/** Torn writes leave whole sectors that were allocated but never written: they read back as zeros. */
const SECTOR_BYTES = 512;

/** What replaying one segment file found. */
export interface SegmentScan {
  /** The readable records, in file order. */
  readonly records: WalRecord[];
  /** Bytes to keep: the whole file, or the offset of a torn tail that must be cut off. */
  readonly keepBytes: number;
  /** Set when the newest segment ends in a torn write. */
  readonly tornTail?: { readonly offset: number; readonly reason: string; readonly droppedRecords: number };
  /** Damaged ranges passed over with `corruption: 'skip'`. */
  readonly skipped: ReadonlyArray<{ readonly offset: number; readonly bytes: number; readonly reason: string }>;
}

export interface ScanOptions {
  /** Path of the file, for messages. */
  readonly file: string;
  /** The newest segment: the only one a crash can leave with a torn tail. */
  readonly last: boolean;
  readonly corruption: 'fail' | 'skip';
}

/**
 * Decodes a segment's records. Segment files are zero-filled when created, so the records are followed by zeros:
 * a zero length where a record would start, with nothing but zeros after it, is the end of the data.
 * A bad record in the newest segment is a torn tail when nothing readable follows
 * it, or when a zero-filled sector lies between it and the next readable record (a crash persisted a later page of
 * an unsynced write before an earlier one); everything from it on was never acknowledged by an fsync, so it is
 * dropped. Any other bad record is corruption: `WalCorruptionError`, or with `corruption: 'skip'` the damaged
 * bytes are passed over up to the next readable record.
 */
export function scanSegment(buf: Buffer, options: ScanOptions): SegmentScan {
  const records: WalRecord[] = [];
  const skipped: Array<{ offset: number; bytes: number; reason: string }> = [];
  const end = buf.length;
  let offset = 0;
  while (offset < end) {
    const result = readRecord(buf, offset, end);
    if (result.ok) {
      records.push(result.record);
      offset = result.end;
      continue;
    }
    if (isZeroFrom(buf, offset)) return { records, keepBytes: offset, skipped };
    const next = findNextRecord(buf, offset + 1, end);
    if (options.last && (next < 0 || hasZeroSector(buf, offset, next))) {
      return {
        records,
        keepBytes: offset,
        tornTail: { offset, reason: result.reason, droppedRecords: next < 0 ? 0 : countRecords(buf, next, end) },
        skipped,
      };
    }
    if (options.corruption === 'fail') throw new WalCorruptionError(options.file, offset, result.reason);
    const resume = next < 0 ? end : next;
    skipped.push({ offset, bytes: resume - offset, reason: result.reason });
    offset = resume;
  }
  return { records, keepBytes: end, skipped };
}

/** The first offset at or after `from` where a whole, valid record starts, or -1. */
function findNextRecord(buf: Buffer, from: number, end: number): number {
  for (let offset = from; offset + RECORD_HEADER_BYTES <= end; offset++) {
    // A zero length is never a record: passes over a preallocated tail without decoding at every byte.
    if ((buf[offset]! | buf[offset + 1]! | buf[offset + 2]! | buf[offset + 3]!) === 0) continue;
    if (readRecord(buf, offset, end).ok) return offset;
  }
  return -1;
}

function countRecords(buf: Buffer, from: number, end: number): number {
  let count = 0;
  for (let offset = from; offset >= 0 && offset < end; ) {
    const result = readRecord(buf, offset, end);
    if (result.ok) {
      count++;
      offset = result.end;
    } else {
      offset = findNextRecord(buf, offset + 1, end);
    }
  }
  return count;
}

const ZEROS = Buffer.alloc(64 * 1024);

/** Whether every byte of `buf` from `from` on is zero. */
function isZeroFrom(buf: Buffer, from: number): boolean {
  for (let offset = from; offset < buf.length; offset += ZEROS.length) {
    const length = Math.min(ZEROS.length, buf.length - offset);
    if (!buf.subarray(offset, offset + length).equals(ZEROS.subarray(0, length))) return false;
  }
  return true;
}

/** Whether [from, to) contains a sector-aligned run of SECTOR_BYTES zero bytes. */
function hasZeroSector(buf: Buffer, from: number, to: number): boolean {
  for (let sector = Math.ceil(from / SECTOR_BYTES) * SECTOR_BYTES; sector + SECTOR_BYTES <= to; sector += SECTOR_BYTES) {
    let zero = true;
    for (let i = sector; i < sector + SECTOR_BYTES; i++) {
      if (buf[i] !== 0) {
        zero = false;
        break;
      }
    }
    if (zero) return true;
  }
  return false;
}
