import type { INestApplication, LogLevel, Type } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { Test, type TestingModule } from '@nestjs/testing';
import type net from 'node:net';
import type pg from 'pg';
import {
  WriteBackHealthIndicator,
  WriteBackModule,
  WriteBackService,
  type WriteBackInstanceOptions,
  type WriteBackModuleOptions,
} from '../../src/write-back/index.js';
import { connectSql, databaseUrl, freshSchema } from './database.js';
import { HealthProbesController } from './health-probes.js';
import { TcpProxy } from './tcp-proxy.js';

export interface WriteBackTestApp {
  app: INestApplication;
  module: TestingModule;
  service: WriteBackService;
  health: WriteBackHealthIndicator;
  schema: string;
  /** A plain pg client on the same database (direct, not through the proxy), `search_path` set to the schema. */
  sql: pg.Client;
  /** The fault-injection proxy every connection of the module goes through (`settings.proxy`). */
  proxy?: TcpProxy;
  /** `http://127.0.0.1:<port>` with `settings.http`: the health probes (test/support/health-probes.ts) are served. */
  httpUrl?: string;
  close(): Promise<void>;
}

/** An app started with `settings.proxy`. */
export interface ProxiedTestApp extends WriteBackTestApp {
  proxy: TcpProxy;
}

export interface WriteBackTestSettings {
  imports?: any[];
  controllers?: Type[];
  /** Connect through a fault-injection proxy: `true` starts one, closed with the app; or the proxy to share. */
  proxy?: TcpProxy | true;
  /** Listen on a free port and serve GET /health/live and /health/ready. @default false */
  http?: boolean;
  /** @default ['error', 'warn'] */
  logger?: LogLevel[] | false;
}

/**
 * Boots a Nest app with `WriteBackModule.forRoot` on a fresh schema of the test database (autoFlush off unless
 * asked for), with a SQL client on that schema. With `settings.proxy` the module connects through a
 * fault-injection proxy; with `settings.http` it serves the health probes.
 */
export async function startWriteBack(
  options: Partial<WriteBackModuleOptions> & WriteBackInstanceOptions,
  settings: WriteBackTestSettings & { proxy: TcpProxy | true },
): Promise<ProxiedTestApp>;
export async function startWriteBack(
  options?: Partial<WriteBackModuleOptions> & WriteBackInstanceOptions,
  settings?: WriteBackTestSettings,
): Promise<WriteBackTestApp>;
export async function startWriteBack(
  options: Partial<WriteBackModuleOptions> & WriteBackInstanceOptions = {},
  settings: WriteBackTestSettings = {},
): Promise<WriteBackTestApp> {
  const proxy = settings.proxy === true ? await TcpProxy.start(databaseUrl()) : settings.proxy;
  const ownsProxy = settings.proxy === true;
  const schema = options.schema ?? freshSchema();
  const url = proxy?.url ?? databaseUrl();
  const module = await Test.createTestingModule({
    imports: [
      WriteBackModule.forRoot({ url, schema, autoFlush: false, ...options }),
      ...(settings.http ? [TerminusModule] : []),
      ...(settings.imports ?? []),
    ],
    controllers: [...(settings.http ? [HealthProbesController] : []), ...(settings.controllers ?? [])],
  }).compile();
  const app = module.createNestApplication({ logger: settings.logger ?? ['error', 'warn'] });
  app.enableShutdownHooks();
  let httpUrl: string | undefined;
  if (settings.http) {
    await app.listen(0, '127.0.0.1');
    httpUrl = `http://127.0.0.1:${((app.getHttpServer() as net.Server).address() as net.AddressInfo).port}`;
  } else {
    await app.init();
  }
  const sql = await connectSql(schema);
  // A server restart ends this connection too: its next query fails, but the error event must not end the run.
  sql.on('error', () => {});
  let closed = false;
  return {
    app,
    module,
    service: app.get(WriteBackService),
    health: app.get(WriteBackHealthIndicator),
    schema,
    sql,
    proxy,
    httpUrl,
    async close() {
      if (closed) return;
      closed = true;
      proxy?.restore();
      await app.close();
      await sql.end();
      if (ownsProxy) await proxy!.close();
    },
  };
}
