import { mkdir, open, readdir } from 'node:fs/promises';
import * as path from 'node:path';

const SEGMENT_NAME = /^wal-(\d{12})\.log$/;

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
