import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import type { PGlite } from '@electric-sql/pglite';
import type { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { demoConfig, type DemoConfig } from '../config/demo.config.js';
import { lockDirectory } from '../write-back/wal/dir-lock.js';

interface Running {
  url: string;
  close(): Promise<void>;
}

/**
 * Postgres for a fresh clone: PGlite (Postgres in WASM) on an on-disk data directory, served over TCP on
 * 127.0.0.1 through pglite-socket so the ordinary `pg` driver and TypeORM use it unchanged. Started only on
 * demand ({@link start}); closed in `onApplicationShutdown`. PGlite never fsyncs: a demo default, not production.
 */
@Injectable()
export class EmbeddedPostgres implements OnApplicationShutdown {
  private readonly logger = new Logger('EmbeddedPostgres');
  private running: Promise<Running> | undefined;

  constructor(@Inject(demoConfig.KEY) private readonly config: DemoConfig) {}

  /** Starts the database (once) and returns its connection URL; `maxConnections` bounds concurrent clients. */
  async start(maxConnections = 32): Promise<string> {
    this.running ??= this.open(Math.max(32, maxConnections));
    return (await this.running).url;
  }

  async onApplicationShutdown(): Promise<void> {
    const running = this.running;
    this.running = undefined;
    const started = await running?.catch(() => undefined);
    if (started === undefined) return;
    await started.close();
    this.logger.log('Embedded Postgres closed');
  }

  private async open(maxConnections: number): Promise<Running> {
    const started = Date.now();
    const dataDir = path.resolve(this.config.dataDir);
    await mkdir(path.dirname(dataDir), { recursive: true });
    const unlock = await lockDirectory(
      `${dataDir}.lock`,
      `The embedded Postgres data directory ${dataDir}`,
      'Stop that process or set WRITE_BACK_DEMO_DATA_DIR to another directory.',
    );
    let db: PGlite | undefined;
    try {
      await mkdir(dataDir, { recursive: true });
      const { PGlite } = await import('@electric-sql/pglite');
      const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
      db = await PGlite.create({ dataDir });
      const server: PGLiteSocketServer = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections });
      await server.start();
      const address = server.getServerConn();
      this.logger.log(
        `Database: embedded Postgres (PGlite, no DATABASE_URL) with data in ${dataDir}, serving on ${address} ` +
          `(started in ${Date.now() - started} ms). Set DATABASE_URL to use a Postgres server.`,
      );
      const opened = db;
      return {
        url: `postgres://postgres@${address}/postgres?sslmode=disable`,
        async close() {
          try {
            await server.stop();
            await opened.close();
          } finally {
            await unlock();
          }
        },
      };
    } catch (error) {
      await db?.close().catch(() => undefined);
      await unlock();
      throw error;
    }
  }
}
