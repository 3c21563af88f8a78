import { mkdir, open, readdir, rm, type FileHandle } from 'node:fs/promises';
import * as path from 'node:path';

const SEGMENT_NAME = /^wal-(\d{12})\.log$/;

/**
 * The next segment while it is being zero-filled. Not a segment name, so replay never reads it; a leftover one (a
 * crash while preparing) is removed at open.
 */
export const PREPARED_SEGMENT_FILE = 'wal-next.tmp';

/** `wal-000000000042.log`: zero-padded so names sort like ids. */
export function segmentFileName(id: number): string {
  return `wal-${String(id).padStart(12, '0')}.log`;
}

/** Segment ids in `dir`, ascending. Other files are left alone. */
export async function listSegmentIds(dir: string): Promise<number[]> {
  const ids: number[] = [];
  for (const name of await readdir(dir)) {
    const match = SEGMENT_NAME.exec(name);
    if (match) ids.push(Number(match[1]));
  }
  return ids.sort((a, b) => a - b);
}

/**
 * Makes file creations, renames and deletions in `dir` durable: without it a crash can forget that a new
 * segment exists (losing its synced records) or resurrect a deleted one.
 */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Creates `dir` (and parents) when missing, durably. */
export async function ensureDirectory(dir: string): Promise<void> {
  const created = await mkdir(dir, { recursive: true });
  if (created === undefined) return;
  // mkdir returns the topmost directory it created: the entry of each new directory in its parent must reach the disk.
  const top = path.resolve(created);
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    await syncDirectory(path.dirname(current));
    if (current === top || current === path.dirname(current)) break;
  }
}

const ZERO_CHUNK_BYTES = 1024 * 1024;
let zeroChunk: Buffer | undefined;

/**
 * Creates (or truncates) `file`, writes `bytes` zero bytes into it and fsyncs it; returns the open handle.
 *
 * Why: an fdatasync after a write that grows a file must also commit the new size and block allocation through the
 * file system's journal, which Postgres's own commits keep busy when both share a disk. Overwriting blocks that
 * already exist syncs the data alone, so group commit keeps its pace while Postgres writes to the same disk.
 * Postgres zero-fills its WAL segments for the same reason. (Figures: bench/README.md, "Results and history".)
 */
export async function createZeroFilledFile(file: string, bytes: number): Promise<FileHandle> {
  const handle = await open(file, 'w');
  try {
    zeroChunk ??= Buffer.alloc(ZERO_CHUNK_BYTES);
    for (let position = 0; position < bytes; ) {
      const length = Math.min(zeroChunk.length, bytes - position);
      const { bytesWritten } = await handle.write(zeroChunk, 0, length, position);
      // Internal: the caller (the WAL's segment preparation) reports it as WalIoError.
      if (bytesWritten <= 0) throw new Error('the write made no progress');
      position += bytesWritten;
    }
    await handle.sync();
    return handle;
  } catch (error) {
    await handle.close().catch(() => undefined);
    await rm(file, { force: true }).catch(() => undefined);
    throw error;
  }
}
