import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { WalRecord } from '../../../src/write-back/wal/index.js';
import type { WalLogger, WalOptions } from '../../../src/write-back/wal/wal-options.js';
import { WRITE_BACK_DEFAULTS } from '../../../src/write-back/write-back.options.js';

const dirs: string[] = [];

/** A fresh directory under the OS temp dir, removed after the test. */
export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wal-spec-'));
  dirs.push(dir);
  return dir;
}

afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

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

/** Polls `check` until it returns true, failing after `timeoutMs`. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Sorts recovered records by key, for order-insensitive comparisons. */
export function byKey(records: readonly WalRecord[]): WalRecord[] {
  return [...records].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
