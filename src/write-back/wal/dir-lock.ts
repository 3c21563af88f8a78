import { open, readFile, rm } from 'node:fs/promises';
import { WriteBackDirectoryInUseError, WriteBackError } from '../write-back.errors.js';

/** Lock files this process holds: our own pid in a lock file we do not hold is a previous incarnation's. */
const held = new Set<string>();

/**
 * Takes `lockPath` (a file holding our pid) so two processes never write one directory at once. A lock left by a
 * process that is gone (kill -9) is taken over; so is one holding our own pid that this process did not take (a
 * container restarted as PID 1 finds its previous incarnation's lock).
 * Returns the release function.
 */
export async function lockDirectory(
  lockPath: string,
  what: string,
  remedy: string,
  holder?: string,
): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(lockPath, 'wx');
      try {
        // The pid on the first line (what older versions wrote), then who in that process holds it.
        await handle.writeFile(holder === undefined ? `${process.pid}\n` : `${process.pid}\n${holder}\n`);
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
      const [pidLine = '', holderLine = ''] = (await readFile(lockPath, 'utf8').catch(() => '')).split('\n');
      const owner = Number(pidLine.trim());
      const ours = owner === process.pid;
      if (Number.isInteger(owner) && owner > 0 && (ours ? held.has(lockPath) : isRunning(owner))) {
        throw new WriteBackDirectoryInUseError(lockPath, owner, holderLine.trim() || undefined, what, remedy);
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
