import { mkdtemp, realpath, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, onTestFinished, TestRunner } from 'vitest';

/** Directories made outside a test (in `beforeAll`): removed after the file's last test. */
const suiteDirs: string[] = [];

afterAll(async () => {
  await Promise.all(suiteDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/**
 * A fresh directory under the OS temp dir (its real path: on macOS /var is a link). Made in a test, it is removed
 * when that test finishes; made in a `beforeAll`, after the last test of the file.
 */
export async function tempDir(prefix = 'write-back-test-'): Promise<string> {
  const dir = await realpath(await mkdtemp(path.join(os.tmpdir(), prefix)));
  if (TestRunner.getCurrentTest() === undefined) suiteDirs.push(dir);
  else onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
