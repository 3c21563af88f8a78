import { cp, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { WalRecord } from '../../src/write-back/wal/index.js';
import type { WalLogger, WalOptions } from '../../src/write-back/wal/wal-options.js';
import { WRITE_BACK_DEFAULTS } from '../../src/write-back/write-back.options.js';
import { tempDir } from './temp-dir.js';

/** A logger that keeps what it is told. */
export function captureLogger(): WalLogger & { warnings: string[]; errors: string[]; infos: string[] } {
  const warnings: string[] = [];
  const errors: string[] = [];
  const infos: string[] = [];
  return {
    warnings,
    errors,
    infos,
    log: (message) => infos.push(message),
    warn: (message) => warnings.push(message),
    error: (message) => errors.push(message),
  };
}

/** Options of a `wal-sync` log in `dir`, resolved as `resolveWriteBackOptions` would (its defaults), with `extra` on top. */
export function syncOptions(dir: string, extra: Partial<WalOptions> = {}): WalOptions {
  return {
    dir,
    mode: 'wal-sync',
    syncIntervalMs: 50,
    segmentBytes: WRITE_BACK_DEFAULTS.walSegmentBytes,
    corruption: WRITE_BACK_DEFAULTS.walCorruption,
    logger: captureLogger(),
    ...extra,
  };
}

export function rec(key: string, version: number, json: string | null = `{"v":${version}}`, rank = 1): WalRecord {
  return { key, json, version, rank };
}

/** The segment files in `dir` (not the lock, nor the next segment being prepared), sorted. */
export async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => /^wal-\d{12}\.log$/.test(name)).sort();
}

/** Sorts recovered records by key, for order-insensitive comparisons. */
export function byKey(records: readonly WalRecord[]): WalRecord[] {
  return [...records].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/**
 * A copy of the WAL directory `walDir` in a fresh temp dir, as a kill -9 leaves it on disk: every file but the
 * lock (which a live process holds; a restart takes a new one).
 */
export async function copyWalDir(walDir: string): Promise<string> {
  const copy = await tempDir('write-back-wal-copy-');
  await cp(walDir, copy, { recursive: true, filter: (source) => path.basename(source) !== 'wal.lock' });
  return copy;
}
