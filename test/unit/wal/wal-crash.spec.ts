import { execFile, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { WriteAheadLog } from '../../../src/write-back/wal/index.js';
import { tempDir } from '../../support/temp-dir.js';
import { captureLogger, syncOptions } from '../../support/wal.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));

/*
 * A child process appends from 64 concurrent writers to hot keys, settles older acknowledged records now and then
 * (as the flusher would), and is killed with SIGKILL mid-stream. It reports each acknowledgement and each settle
 * with a synchronous write to its stdout pipe, so every reported line happened and the kill cannot drop one.
 */
const CHILD = `
import { writeSync } from 'node:fs';
import { WriteAheadLog } from './src/write-back/wal/index.js';
const [dir, mode, floor] = process.argv.slice(2);
const { wal } = await WriteAheadLog.open({ dir, mode, syncIntervalMs: 5, segmentBytes: 4 * 1024, corruption: 'fail', logger: { log: () => {}, warn: console.error, error: console.error } });
let version = Number(floor);
const acked = [];
setInterval(() => {
  const settle = acked.splice(0, Math.max(0, acked.length - 2000));
  if (settle.length === 0) return;
  writeSync(1, settle.map(([key, v]) => 'S ' + key + ' ' + v + '\\n').join(''));
  for (const [key, v] of settle) wal.settle(key, v);
}, 2);
writeSync(1, 'READY\\n');
const writer = async (w) => {
  for (let n = 0; ; n++) {
    const key = 'k' + ((w * 7 + n) % 100);
    const v = version++;
    await wal.append({ key, json: JSON.stringify({ w, n, pad: 'x'.repeat(n % 50) }), version: v, rank: n % 3 });
    writeSync(1, 'A ' + key + ' ' + v + ' ' + Math.round(performance.now()) + '\\n');
    acked.push([key, v]);
    // wal-async resolves at once: yield as a server between requests would, so the writer and timers run.
    if (mode === 'wal-async') await new Promise((resolve) => setImmediate(resolve));
  }
};
for (let w = 0; w < 64; w++) void writer(w);
`;

let childDir: string;

beforeAll(async () => {
  // Node 20 cannot run TypeScript: compile the WAL for the child process.
  childDir = await tempDir('wal-crash-child-');
  await promisify(execFile)(
    join(repo, 'node_modules/.bin/tsc'),
    ['src/write-back/wal/index.ts', '--ignoreConfig', '--module', 'nodenext', '--target', 'es2023', '--types', 'node',
      '--skipLibCheck', '--rootDir', '.', '--outDir', childDir],
    { cwd: repo },
  );
  await writeFile(join(childDir, 'package.json'), '{"type":"module"}');
  await writeFile(join(childDir, 'child.mjs'), CHILD);
}, 60_000);

/** Runs the child until it has reported `acks` acknowledgements (plus a random delay), then SIGKILLs it. */
async function runAndKill(dir: string, mode: string, floor: number, acks: number): Promise<string[]> {
  const child = spawn(process.execPath, [join(childDir, 'child.mjs'), dir, mode, String(floor)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  let count = 0;
  let killing = false;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    output += chunk;
    count += chunk.split('\nA ').length - 1;
    if (!killing && count >= acks) {
      killing = true;
      setTimeout(() => child.kill('SIGKILL'), Math.random() * 50);
    }
  });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on('exit', (c, s) => resolve([c, s])),
  );
  expect(signal, `child exited with code ${code}`).toBe('SIGKILL');
  return output.split('\n').filter((line) => line !== '');
}

describe.each(['wal-sync', 'wal-async'] as const)('WriteAheadLog after kill -9 (%s)', (mode) => {
  it('replays every acknowledged, unsettled write and never an older value than one acknowledged', async () => {
    const dir = await tempDir();
    const newestAcked = new Map<string, number>();
    const settled = new Map<string, number>();
    let floor = Date.now() * 1000;
    for (let round = 0; round < 3; round++) {
      const lines = await runAndKill(dir, mode, floor, mode === 'wal-sync' ? 3000 : 20_000);
      expect(lines[0]).toBe('READY');
      /** When (ms on the child's clock) each key@version was acknowledged. */
      const ackedAt = new Map<string, number>();
      let lastAck = 0;
      for (const line of lines.slice(1)) {
        const [kind, key, v, at] = line.split(' ') as [string, string, string, string];
        if (kind === 'A') {
          ackedAt.set(`${key}@${v}`, Number(at));
          lastAck = Math.max(lastAck, Number(at));
        }
        const version = Number(v);
        const target = kind === 'A' ? newestAcked : settled;
        target.set(key, Math.max(target.get(key) ?? 0, version));
      }

      const logger = captureLogger();
      const { wal, recovered } = await WriteAheadLog.open(syncOptions(dir, { mode, syncIntervalMs: 5, logger }));
      await wal.close();
      expect(logger.errors).toEqual([]);
      const byKey = new Map(recovered.map((record) => [record.key, record]));
      let mustRecover = 0;
      const lost: string[] = [];
      for (const [key, version] of newestAcked) {
        const found = byKey.get(key);
        // wal-sync: a key never replays an older value than one acknowledged. wal-async may lose the newest writes.
        if (found !== undefined && mode === 'wal-sync') expect(found.version, key).toBeGreaterThanOrEqual(version);
        if ((settled.get(key) ?? 0) < version) {
          mustRecover++;
          if (found === undefined || found.version < version) lost.push(`${key}@${version}`);
        }
      }
      expect(mustRecover).toBeGreaterThan(0);
      if (mode === 'wal-sync') {
        expect(lost).toEqual([]);
      } else {
        // kill -9 keeps the page cache: only writes acknowledged but not yet written are lost, the last few ms.
        const oldestLost = Math.min(...lost.map((entry) => ackedAt.get(entry)!));
        expect(lastAck - oldestLost).toBeLessThan(500);
      }
      floor = Math.max(floor, ...recovered.map((record) => record.version), ...newestAcked.values()) + 1;
    }
  }, 60_000);
});
