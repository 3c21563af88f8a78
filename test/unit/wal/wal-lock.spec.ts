import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WriteAheadLog } from '../../../src/write-back/wal/index.js';
import { WAL_LOCK_FILE } from '../../../src/write-back/wal/write-ahead-log.js';
import { WriteBackDirectoryInUseError } from '../../../src/write-back/write-back.errors.js';
import { tempDir } from '../../support/temp-dir.js';
import { sleep } from '../../support/wait.js';
import { rec, syncOptions } from '../../support/wal.js';

/** A live process other than this one, to own a lock file. */
function otherProcess() {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  return { pid: child.pid!, stop: () => child.kill('SIGKILL') };
}

describe('WAL directory lock', () => {
  it('refuses a directory whose lock belongs to another live process, naming it and the fix', async () => {
    const dir = await tempDir();
    const other = otherProcess();
    try {
      await writeFile(join(dir, WAL_LOCK_FILE), `${other.pid}\n`);
      const error = await WriteAheadLog.open(syncOptions(dir)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WriteBackDirectoryInUseError);
      expect((error as Error).message).toContain(String(other.pid));
      expect((error as Error).message).toContain('walDir');
    } finally {
      other.stop();
    }
  });

  it('takes over a lock left by a dead process, holds it while open and releases it on close', async () => {
    const dir = await tempDir();
    const gone = otherProcess();
    gone.stop();
    await sleep(50);
    await writeFile(join(dir, WAL_LOCK_FILE), `${gone.pid}\n`);
    const { wal } = await WriteAheadLog.open(syncOptions(dir));
    expect((await readFile(join(dir, WAL_LOCK_FILE), 'utf8')).trim()).toBe(String(process.pid));
    await wal.append(rec('a', 1));
    await wal.close();
    await expect(readFile(join(dir, WAL_LOCK_FILE), 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
    const reopened = await WriteAheadLog.open(syncOptions(dir));
    expect(reopened.recovered.map((r) => r.key)).toEqual(['a']);
    await reopened.wal.close();
  });
});

describe('WAL directory lock within one process', () => {
  it('refuses a second open of a directory this process holds, and takes over its own pid left by a previous run', async () => {
    const dir = await tempDir();
    const first = await WriteAheadLog.open(syncOptions(dir));
    await expect(WriteAheadLog.open(syncOptions(dir))).rejects.toBeInstanceOf(WriteBackDirectoryInUseError);
    await first.wal.close();
    // Our pid, but not a lock we hold (a container restarted as PID 1): stale.
    await writeFile(join(dir, WAL_LOCK_FILE), `${process.pid}\n`);
    const second = await WriteAheadLog.open(syncOptions(dir));
    await second.wal.close();
  });
});
