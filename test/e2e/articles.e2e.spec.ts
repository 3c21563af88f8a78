import type { NestExpressApplication } from '@nestjs/platform-express';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/config/create-app.js';
import { WriteBackService } from '../../src/write-back/index.js';
import { connectSql, databaseUrl, freshSchema } from '../support/database.js';
import { withDemoEnv } from '../support/demo-env.js';

describe('demo service: articles written behind through WriteBackRepository', () => {
  let app: NestExpressApplication;
  let base: string;
  let sql: Awaited<ReturnType<typeof connectSql>>;
  const request = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(base + path, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
      // A POST says application/json even without a body (the demo refuses anything a cross-site form could send).
      headers: body === undefined && method !== 'POST' ? {} : { 'content-type': 'application/json' },
    });
    const text = await response.text();
    return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
  };

  beforeAll(async () => {
    const schema = freshSchema();
    app = await withDemoEnv(
      { DATABASE_URL: databaseUrl(), WRITE_BACK_SCHEMA: schema, WRITE_BACK_AUTO_FLUSH: 'false' },
      () => createApp({ logger: ['error'] }),
    );
    await app.listen(0, '127.0.0.1');
    base = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
    sql = await connectSql(schema);
  });
  afterAll(async () => {
    await app?.close();
    await sql?.end();
  });

  it('PUT creates, POST /view counts exactly under concurrent requests, PATCH changes the title only, GET reads pending changes', async () => {
    expect((await request('GET', '/articles/hello')).status).toBe(404);
    expect((await request('POST', '/articles/hello/view')).status).toBe(404);
    expect((await request('PUT', '/articles/hello', { title: 'Hello' })).status).toBe(204);
    await Promise.all(Array.from({ length: 200 }, () => request('POST', '/articles/hello/view')));
    const pending = await request('GET', '/articles/hello');
    expect(pending).toMatchObject({ status: 200, body: { id: 'hello', title: 'Hello', views: '200' } });
    // The first view wrote the new row (its views column left to the default) so the increments add to it.
    expect((await sql.query('SELECT views::text FROM articles')).rows).toEqual([{ views: '0' }]);

    await app.get(WriteBackService).flush();
    expect((await sql.query(`SELECT title, views::text FROM articles WHERE id = 'hello'`)).rows).toEqual([{ title: 'Hello', views: '200' }]);
    // Another writer counts too (plain SQL): the demo's increments and title change add to / leave it.
    await sql.query(`UPDATE articles SET views = views + 1000 WHERE id = 'hello'`);
    await Promise.all(Array.from({ length: 50 }, () => request('POST', '/articles/hello/view')));
    expect((await request('PATCH', '/articles/hello', { title: 'Hello again' })).status).toBe(204);
    expect((await request('PATCH', '/articles/hello', { nope: 1 })).status).toBe(400);
    await app.get(WriteBackService).flush();
    expect((await sql.query(`SELECT title, views::text FROM articles WHERE id = 'hello'`)).rows).toEqual([{ title: 'Hello again', views: '1250' }]);
  });
});
