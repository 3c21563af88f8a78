import type { NestExpressApplication } from '@nestjs/platform-express';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { createApp } from '../../src/config/create-app.js';
import { connectSql, databaseUrl, freshSchema } from './database.js';
import { withDemoEnv } from './demo-env.js';

/** The demo service booted in this process, listening, with a SQL client on its schema. */
export interface BootedDemo {
  app: NestExpressApplication;
  /** `http://127.0.0.1:<port>` */
  base: string;
  schema: string;
  sql: pg.Client;
  close(): Promise<void>;
}

/**
 * Boots the demo service in this process on the test database, in `schema` (fresh by default), flush timer off
 * unless `env` says otherwise, listening on a free port.
 */
export async function bootDemoApp(env: Record<string, string> = {}, schema = freshSchema()): Promise<BootedDemo> {
  const app = await withDemoEnv(
    { DATABASE_URL: databaseUrl(), WRITE_BACK_SCHEMA: schema, WRITE_BACK_AUTO_FLUSH: 'false', ...env },
    () => createApp({ logger: ['error'] }),
  );
  await app.listen(0, '127.0.0.1');
  const base = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
  const sql = await connectSql(schema);
  return {
    app,
    base,
    schema,
    sql,
    async close() {
      await app.close();
      await sql.end();
    },
  };
}

export interface DemoApp extends BootedDemo {
  /** Sends `raw` (or nothing) with the content type given; the answer's body parsed as JSON when there is one. */
  send(method: string, path: string, raw?: string, contentType?: string): Promise<{ status: number; body: any }>;
  /** Sends `body` as `application/json`. */
  request(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
}

/** {@link bootDemoApp} with JSON request helpers. */
export async function startDemoApp(env: Record<string, string> = {}, schema = freshSchema()): Promise<DemoApp> {
  const demo = await bootDemoApp(env, schema);
  const send = async (method: string, path: string, raw?: string, contentType?: string) => {
    const response = await fetch(demo.base + path, { method, body: raw, headers: contentType ? { 'content-type': contentType } : {} });
    const text = await response.text();
    return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
  };
  return {
    ...demo,
    send,
    request: (method, path, body) =>
      send(method, path, body === undefined ? undefined : JSON.stringify(body), body === undefined ? undefined : 'application/json'),
  };
}
