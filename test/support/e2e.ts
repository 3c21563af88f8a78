import { Test, type TestingModule } from '@nestjs/testing';
import type { INestApplication, Type } from '@nestjs/common';
import pg from 'pg';
import { inject } from 'vitest';
import {
  WriteBackModule,
  WriteBackService,
  type WriteBackInstanceOptions,
  type WriteBackModuleOptions,
} from '../../src/write-back/index.js';

export const databaseUrl = (): string => inject('databaseUrl');
export const isPglite = (): boolean => inject('databaseKind') === 'pglite';
/** Tests that need a real server process (locks held across connections, killing backends). */
export const NEEDS_SERVER = 'needs a real Postgres server (embedded PGlite serializes every query)';

let schemaCounter = 0;

/** A fresh schema per test, so specs running in parallel never share a table. */
export function freshSchema(): string {
  return `t_${process.pid}_${Date.now().toString(36)}_${schemaCounter++}`;
}

export interface WriteBackTestApp {
  app: INestApplication;
  module: TestingModule;
  service: WriteBackService;
  schema: string;
  /** A plain pg client on the same database, with `search_path` set to the test schema. */
  sql: pg.Client;
  close(): Promise<void>;
}

/** Boots a Nest app with `WriteBackModule.forRoot` on a fresh schema (autoFlush off unless asked for). */
export async function startWriteBack(
  options: Partial<WriteBackModuleOptions> & WriteBackInstanceOptions = {},
  extra: { imports?: any[]; controllers?: Type[] } = {},
): Promise<WriteBackTestApp> {
  const schema = options.schema ?? freshSchema();
  const module = await Test.createTestingModule({
    imports: [
      WriteBackModule.forRoot({ url: databaseUrl(), schema, autoFlush: false, ...options }),
      ...(extra.imports ?? []),
    ],
    controllers: extra.controllers ?? [],
  }).compile();
  const app = module.createNestApplication({ logger: ['error', 'warn'] });
  app.enableShutdownHooks();
  await app.init();
  const sql = await connectSql(schema);
  let closed = false;
  return {
    app,
    module,
    service: app.get(WriteBackService),
    schema,
    sql,
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      await sql.end();
    },
  };
}

export async function connectSql(schema?: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: databaseUrl() });
  await client.connect();
  if (schema) await client.query(`SET search_path TO "${schema}"`);
  return client;
}

/** The rows of write_back_entries as key -> { value, version }. */
export async function tableRows(sql: pg.Client): Promise<Map<string, { value: unknown; version: number }>> {
  const result = await sql.query('SELECT key, value, version::text AS version FROM write_back_entries ORDER BY key');
  return new Map(result.rows.map((r) => [r.key as string, { value: r.value, version: Number(r.version) }]));
}

/** Waits until `condition` holds, polling on the event loop (no fixed sleeps). */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Holds an exclusive lock on the table from another connection, so the next flush blocks inside Postgres. */
export async function lockTable(t: WriteBackTestApp): Promise<{ release(): Promise<void>; client: pg.Client }> {
  const client = await connectSql(t.schema);
  await client.query('BEGIN');
  await client.query('LOCK TABLE write_back_entries IN EXCLUSIVE MODE');
  return {
    client,
    async release() {
      await client.query('COMMIT');
      await client.end();
    },
  };
}
