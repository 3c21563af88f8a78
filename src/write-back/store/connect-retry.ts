import { setTimeout as delay } from 'node:timers/promises';
import type { DataSource } from 'typeorm';
import { WriteBackConnectionError } from '../write-back.errors.js';

/** How the first connection is retried (`retryAttempts` / `retryDelay`, as TypeOrmModule has them). */
export interface ConnectRetry {
  /** Attempts after the first one. */
  attempts: number;
  delayMs: number;
  logger: { warn(message: string): void };
}

/** Where a connection string points, for messages: never the password. */
export function describeTarget(url: string): { host: string; port: string; database: string } {
  try {
    const parsed = new URL(url);
    return {
      host: parsed.hostname || 'localhost',
      port: parsed.port || '5432',
      database: decodeURIComponent(parsed.pathname.replace(/^\//, '')) || '(default)',
    };
  } catch {
    return { host: '(unparsable url)', port: '?', database: '?' };
  }
}

/**
 * Initializes `dataSource`, trying again `retry.attempts` times `retry.delayMs` apart (a database that starts
 * after the application, as in a compose file or a pod starting beside its database). Each failed attempt is
 * logged; the last one throws {@link WriteBackConnectionError} naming host, port and database.
 */
export async function initializeWithRetry(dataSource: DataSource, url: string, retry?: ConnectRetry): Promise<DataSource> {
  const target = describeTarget(url);
  const total = (retry?.attempts ?? 0) + 1;
  for (let attempt = 1; ; attempt++) {
    try {
      return await dataSource.initialize();
    } catch (error) {
      const failure = new WriteBackConnectionError(target, attempt, total, error);
      if (attempt >= total || retry === undefined) throw failure;
      retry.logger.warn(`${failure.message} Retrying in ${retry.delayMs} ms.`);
      await delay(retry.delayMs);
    }
  }
}
