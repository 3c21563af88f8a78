import { open, readFile, rm } from 'node:fs/promises';
import { WriteBackError } from '../write-back.errors.js';

/** Another live process holds the lock file of a directory this process needs for itself. */
export class WriteBackDirectoryInUseError extends WriteBackError {
  constructor(
    readonly lockPath: string,
    readonly ownerPid: number,
    what: string,
    remedy: string,
  ) {
    super(
      `${what} is in use by process ${ownerPid} (lock file ${lockPath}). ${remedy} ` +
        '(Delete the lock file only if that process is not using it.)',
    );
  }
}

/** Lock files this process holds: our own pid in a lock file we do not hold is a previous incarnation's. */
const held = new Set<string>();

/**
 * Takes `lockPath` (a file holding our pid) so two processes never write one directory at once. A lock left by a
 * process that is gone (kill -9) is taken over; so is one holding our own pid that this process did not take (a
 * container restarted as PID 1 finds its previous incarnation's lock).
 * Returns the release function.
 */
export async function lockDirectory(lockPath: string, what: string, remedy: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(lockPath, 'wx');
      try {
        await handle.writeFile(`${process.pid}\n`);
      } finally {
        await handle.close();
      }
      held.add(lockPath);
      return async () => {
        held.delete(lockPath);
        await rm(lockPath, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
      const ours = owner === process.pid;
      if (Number.isInteger(owner) && owner > 0 && (ours ? held.has(lockPath) : isRunning(owner))) {
        throw new WriteBackDirectoryInUseError(lockPath, owner, what, remedy);
      }
      await rm(lockPath, { force: true });
    }
  }
  throw new WriteBackError(`Could not take the lock file ${lockPath}`);
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
