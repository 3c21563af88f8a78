import { open, readFile, rm } from 'node:fs/promises';

/**
 * Takes `<dataDir>.lock` (holding our pid) so two processes never open one PGlite data directory at once, which
 * would corrupt it. A lock left by a process that is gone (kill -9) is taken over. Returns the release function.
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const lockPath = `${dataDir}.lock`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(lockPath, 'wx');
      try {
        await handle.writeFile(`${process.pid}\n`);
      } finally {
        await handle.close();
      }
      return () => rm(lockPath, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(owner) && owner > 0 && isRunning(owner)) {
        throw new Error(
          `The embedded Postgres data directory ${dataDir} is in use by process ${owner} (lock file ${lockPath}). ` +
            'Stop that process or set WRITE_BACK_DEMO_DATA_DIR to another directory (delete the lock file only if ' +
            'that process is not using it).',
        );
      }
      await rm(lockPath, { force: true });
    }
  }
  throw new Error(`Could not take the lock file ${lockPath}`);
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
