import { Injectable, Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import type { WriteBackInstanceOptions } from './write-back.interfaces.js';
import { WriteBackModule } from './write-back.module.js';
import type { WriteBackModuleOptions } from './write-back.options.js';
import { WriteBackConfigError } from './write-back.errors.js';

/** Options of {@link WriteBackTestingModule.forRoot}: the module's options without a connection. */
export type WriteBackTestingOptions = Omit<WriteBackModuleOptions, 'url' | 'dataSource' | 'connectionOptions'> &
  WriteBackInstanceOptions;

/**
 * A throw-away in-memory Postgres for one test module: PGlite (Postgres compiled to WASM) served over TCP on
 * 127.0.0.1 by pglite-socket, so the module talks to it through `pg` and TypeORM exactly as to a server.
 * Closed in `onApplicationShutdown`, after the write-back service (which imports it) drained.
 */
@Injectable()
export class WriteBackTestingPostgres implements OnApplicationShutdown {
  private running: Promise<{ url: string; close(): Promise<void> }> | undefined;

  /** Starts the database (once) and returns its connection URL. */
  async url(): Promise<string> {
    this.running ??= open();
    return (await this.running).url;
  }

  async onApplicationShutdown(): Promise<void> {
    const running = this.running;
    this.running = undefined;
    await (await running?.catch(() => undefined))?.close();
  }
}

async function open(): Promise<{ url: string; close(): Promise<void> }> {
  let pglite: typeof import('@electric-sql/pglite');
  let socket: typeof import('@electric-sql/pglite-socket');
  try {
    pglite = await import('@electric-sql/pglite');
    socket = await import('@electric-sql/pglite-socket');
  } catch (error) {
    throw new WriteBackConfigError(
      'WriteBackTestingModule',
      'it runs on embedded PGlite: install the dev dependencies "@electric-sql/pglite@0.5.14" and ' +
        `"@electric-sql/pglite-socket@0.2.17" (${error instanceof Error ? error.message : String(error)})`,
    );
  }
  const db = await pglite.PGlite.create();
  try {
    const server = new socket.PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 64 });
    await server.start();
    const address = server.getServerConn();
    return {
      url: `postgres://postgres@${address}/postgres?sslmode=disable`,
      async close() {
        await server.stop();
        await db.close();
      },
    };
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
}

@Module({})
class WriteBackTestingPostgresModule {}

/**
 * The real write-back module for an application's own tests, on an embedded in-memory Postgres (PGlite): no
 * server, no mock. Each `forRoot()` gets a fresh, empty database, dropped when the app closes. The flush timer is
 * off unless `autoFlush: true` is given, so a test calls `flush()` where it wants rows in Postgres.
 *
 * ```ts
 * const module = await Test.createTestingModule({
 *   imports: [WriteBackTestingModule.forRoot(), ProfilesModule],
 * }).compile();
 * const app = await module.createNestApplication().init();
 * ```
 */
export class WriteBackTestingModule {
  static forRoot(options: WriteBackTestingOptions = {}): DynamicModule {
    const { name, isGlobal, ...moduleOptions } = options;
    const postgres: DynamicModule = {
      module: WriteBackTestingPostgresModule,
      providers: [WriteBackTestingPostgres],
      exports: [WriteBackTestingPostgres],
    };
    return WriteBackModule.forRootAsync({
      name,
      isGlobal,
      imports: [postgres],
      inject: [WriteBackTestingPostgres],
      useFactory: async (database: WriteBackTestingPostgres): Promise<WriteBackModuleOptions> => ({
        autoFlush: false,
        retryAttempts: 0,
        ...moduleOptions,
        url: await database.url(),
      }),
    });
  }
}
