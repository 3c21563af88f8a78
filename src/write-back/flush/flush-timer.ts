import type { FlushTimer } from '../model/types.js';

/** What the flush timer uses of `@nestjs/schedule`'s `SchedulerRegistry`. */
export interface TimeoutRegistry {
  addTimeout(name: string, timeout: NodeJS.Timeout): void;
  deleteTimeout(name: string): void;
  doesExist(type: 'timeout', name: string): boolean;
}

/**
 * The flusher's timer slot on a plain `setTimeout`, also registered under `name` with the application's
 * `SchedulerRegistry` when it has one (so it is visible and removable like the app's own timers). The registry is
 * looked up at the first arm, i.e. in `onApplicationBootstrap`, once every provider of the app exists.
 */
export function createFlushTimer(name: string, findRegistry: () => TimeoutRegistry | undefined): FlushTimer {
  let handle: NodeJS.Timeout | undefined;
  let registry: TimeoutRegistry | undefined | null = null;
  const lookup = () => {
    if (registry === null) registry = findRegistry();
    return registry;
  };
  const clear = () => {
    if (handle === undefined) return;
    clearTimeout(handle);
    const found = lookup();
    if (found?.doesExist('timeout', name)) found.deleteTimeout(name);
    handle = undefined;
  };
  return {
    set(callback, delayMs) {
      clear();
      handle = setTimeout(callback, delayMs);
      // The app's own handles (HTTP server...) keep the process alive; a flush timer alone should not.
      handle.unref();
      lookup()?.addTimeout(name, handle);
    },
    clear,
  };
}
