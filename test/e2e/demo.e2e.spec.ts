import type { NestExpressApplication } from '@nestjs/platform-express';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/config/create-app.js';
import { databaseUrl, freshSchema, tableRows } from '../support/database.js';
import { bootDemoApp } from '../support/demo-app.js';
import { demoEnvOf, withDemoEnv } from '../support/demo-env.js';

const demoEnvAtStart = demoEnvOf(process.env);

interface Demo {
  app: NestExpressApplication;
  schema: string;
  sql: pg.Client;
  request(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** PUT with a raw request body (and content type), for bodies JSON.stringify would not produce. */
  putRaw(path: string, raw: string | undefined, contentType?: string): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

/** Boots the demo service on the test database, in a fresh schema, listening on a free port. */
async function startDemo(env: Record<string, string> = {}): Promise<Demo> {
  const { app, base, schema, sql, close } = await bootDemoApp(env);
  const send = async (method: string, path: string, raw: string | undefined, contentType?: string) => {
    const response = await fetch(base + path, {
      method,
      body: raw,
      headers: contentType ? { 'content-type': contentType } : {},
    });
    const text = await response.text();
    return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
  };
  return {
    app,
    schema,
    sql,
    // POST always says application/json (the demo refuses a POST without it: cross-site form posts).
    request: (method, path, body) =>
      send(method, path, body === undefined ? undefined : JSON.stringify(body), body === undefined && method !== 'POST' ? undefined : 'application/json'),
    putRaw: (path, raw, contentType = 'application/json') => send('PUT', path, raw, contentType),
    close,
  };
}

describe('demo service (HTTP API on Postgres)', () => {
  let demo: Demo;

  beforeAll(async () => {
    demo = await startDemo({ WRITE_BACK_MAX_KEY_LENGTH: '8' });
  });
  afterAll(async () => demo?.close());

  it('reads its own writes before any flush, then persists them on POST /admin/flush', async () => {
    expect((await demo.request('PUT', '/kv/a', { x: 1, list: [1, 2] })).status).toBe(204);
    expect(await demo.request('GET', '/kv/a')).toEqual({ status: 200, body: { x: 1, list: [1, 2] } });
    expect((await tableRows(demo.sql)).has('a')).toBe(false);

    const flushed = await demo.request('POST', '/admin/flush');
    expect(flushed.status).toBe(200);
    expect(flushed.body).toMatchObject({ committed: expect.any(Number), deadLettered: 0 });
    expect(flushed.body.committed).toBeGreaterThanOrEqual(1);
    expect((await tableRows(demo.sql)).get('a')?.value).toEqual({ x: 1, list: [1, 2] });
  });

  it('stores any JSON value: strings, numbers, arrays, null', async () => {
    for (const [key, value] of [['str', 'hello'], ['num', 42.5], ['arr', [1, 'two']], ['nul', null]] as const) {
      expect((await demo.request('PUT', `/kv/${key}`, value)).status).toBe(204);
      expect(await demo.request('GET', `/kv/${key}`)).toEqual({ status: 200, body: value });
    }
    await demo.request('POST', '/admin/flush');
    const rows = await tableRows(demo.sql);
    expect(rows.get('str')?.value).toBe('hello');
    expect(rows.get('nul')?.value).toBeNull();
  });

  it('answers 404 for a missing key', async () => {
    const missing = await demo.request('GET', '/kv/nothere');
    expect(missing.status).toBe(404);
    expect(missing.body.message).toContain('nothere');
  });

  it('answers 400 with the error message for a bad key or body, and stores nothing', async () => {
    const writesBefore = (await demo.request('GET', '/admin/stats')).body.writes;
    const longKey = await demo.request('PUT', '/kv/toolongkey', { x: 1 });
    expect(longKey.status).toBe(400);
    expect(longKey.body).toMatchObject({ statusCode: 400, error: 'WriteBackInvalidKeyError' });
    expect(longKey.body.message).toContain('maxKeyLength');
    expect((await demo.request('GET', '/kv/toolongkey')).status).toBe(400);

    const nul = await demo.putRaw('/kv/nul0', JSON.stringify('a\u0000b'));
    expect(nul.status).toBe(400);
    expect(nul.body).toMatchObject({ error: 'WriteBackInvalidValueError' });
    expect(nul.body.message).toContain('\\u0000');

    const noBody = await demo.putRaw('/kv/nobody', undefined);
    expect(noBody.status).toBe(400);
    expect(noBody.body.message).toContain('JSON');
    expect((await demo.putRaw('/kv/nobody', 'not json')).status).toBe(400);
    expect((await demo.putRaw('/kv/nobody', '{"x":1}', 'text/plain')).status).toBe(415);

    for (const key of ['nul0', 'nobody']) expect((await demo.request('GET', `/kv/${key}`)).status).toBe(404);
    expect((await demo.request('GET', '/admin/stats')).body.writes).toBe(writesBefore);
  });

  it('answers 400 for a value over maxValueBytes and 413 for a body over the parser limit', async () => {
    const tooLarge = await demo.request('PUT', '/kv/big', 'x'.repeat(1024 * 1024 + 1));
    expect(tooLarge.status).toBe(400);
    expect(tooLarge.body).toMatchObject({ error: 'WriteBackValueTooLargeError' });
    expect(tooLarge.body.message).toContain('maxValueBytes');
    expect((await demo.request('PUT', '/kv/huge', 'x'.repeat(3 * 1024 * 1024))).status).toBe(413);
    expect((await demo.request('GET', '/kv/big')).status).toBe(404);
  });

  it('deletes with 204, after which GET is 404 and the row goes on flush', async () => {
    await demo.request('PUT', '/kv/gone', { v: 1 });
    await demo.request('POST', '/admin/flush');
    expect((await tableRows(demo.sql)).has('gone')).toBe(true);

    expect((await demo.request('DELETE', '/kv/gone')).status).toBe(204);
    expect((await demo.request('GET', '/kv/gone')).status).toBe(404);
    await demo.request('POST', '/admin/flush');
    expect((await tableRows(demo.sql)).has('gone')).toBe(false);
  });

  it('accepts ?priority=high and rejects ?priority=bogus or ?writeThrough=maybe with 400', async () => {
    expect((await demo.request('PUT', '/kv/hi?priority=high', 1)).status).toBe(204);
    expect((await demo.request('PUT', '/kv/lo?priority=low', 2)).status).toBe(204);
    const bogus = await demo.request('PUT', '/kv/bogus?priority=bogus', 3);
    expect(bogus.status).toBe(400);
    expect(bogus.body.message).toContain('priority');
    const maybe = await demo.request('PUT', '/kv/maybe?writeThrough=maybe', 4);
    expect(maybe.status).toBe(400);
    expect(maybe.body.message).toContain('writeThrough');
    expect((await demo.request('GET', '/kv/bogus')).status).toBe(404);
    expect((await demo.request('GET', '/kv/hi')).body).toBe(1);
  });

  it('commits a ?writeThrough=true write before answering, without a flush', async () => {
    expect((await demo.request('PUT', '/kv/wt?writeThrough=true', { through: true })).status).toBe(204);
    expect((await tableRows(demo.sql)).get('wt')?.value).toEqual({ through: true });
  });

  it('reports stats on GET /admin/stats', async () => {
    const before = (await demo.request('GET', '/admin/stats')).body;
    await demo.request('PUT', '/kv/counted', { n: 1 });
    const stats = await demo.request('GET', '/admin/stats');
    expect(stats.status).toBe(200);
    expect(stats.body.writes).toBe(before.writes + 1);
    expect(stats.body).toMatchObject({ dirty: expect.any(Number), flushLagMs: expect.any(Number), circuit: 'closed' });
  });

  it('answers the liveness and readiness probes with their details', async () => {
    const live = await demo.request('GET', '/health/live');
    expect(live.status).toBe(200);
    expect(live.body).toMatchObject({ status: 'ok', info: { writeBack: { status: 'up' } } });

    await demo.request('PUT', '/kv/ready', { r: 1 });
    const ready = await demo.request('GET', '/health/ready');
    expect(ready.status).toBe(200);
    expect(ready.body.status).toBe('ok');
    expect(ready.body.info.writeBack).toMatchObject({ status: 'up', circuit: 'closed', deadLetters: expect.any(Number) });
    expect(ready.body.info.writeBack.dirty).toBeGreaterThanOrEqual(1);
    expect(ready.body.info.writeBack.flushLagMs).toEqual(expect.any(Number));
  });

  it('dead-letters rows Postgres rejects, lists, replays and discards them', async () => {
    const table = `"${demo.schema}".write_back_entries`;
    await demo.sql.query(`ALTER TABLE ${table} ADD CONSTRAINT no_bad CHECK (coalesce(value->>'bad', '') <> 'yes')`);
    try {
      await demo.request('PUT', '/kv/bad1', { bad: 'yes', n: 1 });
      await demo.request('PUT', '/kv/bad2', { bad: 'yes', n: 2 });
      await demo.request('PUT', '/kv/good1', { bad: 'no' });
      const report = await demo.request('POST', '/admin/flush');
      expect(report.body).toMatchObject({ deadLettered: 2 });
      expect((await tableRows(demo.sql)).get('good1')?.value).toEqual({ bad: 'no' });

      // A write-through that Postgres rejects is a 502 with the reason.
      const through = await demo.request('PUT', '/kv/bad3?writeThrough=true', { bad: 'yes' });
      expect(through.status).toBe(502);
      expect(through.body).toMatchObject({ error: 'WriteBackWriteThroughError' });
      expect(through.body.message).toContain('23514');
    } finally {
      await demo.sql.query(`ALTER TABLE ${table} DROP CONSTRAINT IF EXISTS no_bad`);
    }

    const listed = await demo.request('GET', '/admin/dead-letters?key=bad1');
    expect(listed.status).toBe(200);
    expect(listed.body).toHaveLength(1);
    expect(listed.body[0]).toMatchObject({ key: 'bad1', value: { bad: 'yes', n: 1 }, operation: 'upsert', errorCode: '23514' });
    const all = await demo.request('GET', '/admin/dead-letters?limit=10');
    expect(all.body.map((letter: { key: string }) => letter.key)).toEqual(['bad1', 'bad2', 'bad3']);
    const page = await demo.request('GET', `/admin/dead-letters?limit=1&afterId=${all.body[0].id}`);
    expect(page.body.map((letter: { key: string }) => letter.key)).toEqual(['bad2']);

    const replay = await demo.request('POST', `/admin/dead-letters/${listed.body[0].id}/replay`);
    expect(replay).toEqual({ status: 200, body: { requeued: true, outcome: 'committed' } });
    await demo.request('POST', '/admin/flush');
    expect((await tableRows(demo.sql)).get('bad1')?.value).toEqual({ bad: 'yes', n: 1 });

    const bad2 = all.body[1].id;
    expect((await demo.request('DELETE', `/admin/dead-letters/${bad2}`)).status).toBe(204);
    const again = await demo.request('DELETE', `/admin/dead-letters/${bad2}`);
    expect(again.status).toBe(404);
    expect(again.body).toMatchObject({ statusCode: 404, error: 'WriteBackDeadLetterNotFoundError' });
    expect((await demo.request('POST', '/admin/dead-letters/987654321/replay')).status).toBe(404);
    expect((await demo.request('DELETE', '/admin/dead-letters/not-an-id')).status).toBe(400);
    expect((await demo.request('GET', '/admin/dead-letters?limit=0')).status).toBe(400);
    expect((await demo.request('GET', '/admin/dead-letters')).body.map((letter: { key: string }) => letter.key)).toEqual(['bad3']);
  });
});

describe('demo service under backpressure', () => {
  let demo: Demo | undefined;
  afterEach(async () => {
    await demo?.close();
    demo = undefined;
  });

  it('answers 503 when maxDirtyEntries unflushed keys are held (backpressure "reject")', async () => {
    demo = await startDemo({ WRITE_BACK_MAX_DIRTY_ENTRIES: '2', WRITE_BACK_BACKPRESSURE: 'reject' });
    expect((await demo.request('PUT', '/kv/k1', 1)).status).toBe(204);
    expect((await demo.request('PUT', '/kv/k2', 2)).status).toBe(204);
    const full = await demo.request('PUT', '/kv/k3', 3);
    expect(full.status).toBe(503);
    expect(full.body).toMatchObject({ statusCode: 503, error: 'WriteBackOverloadedError' });
    expect(full.body.message).toContain('maxDirtyEntries');
    // Rewriting a key already dirty takes no room; after a flush there is room again.
    expect((await demo.request('PUT', '/kv/k1', 11)).status).toBe(204);
    await demo.request('POST', '/admin/flush');
    expect((await demo.request('PUT', '/kv/k3', 3)).status).toBe(204);
    expect((await demo.request('GET', '/kv/k3')).body).toBe(3);
  });
});

describe('demo service configuration', () => {
  const base = (): Record<string, string> => ({ DATABASE_URL: databaseUrl(), WRITE_BACK_SCHEMA: freshSchema() });

  it('fails start-up on a malformed variable, naming it', async () => {
    const failure = withDemoEnv({ ...base(), WRITE_BACK_BATCH_SIZE: 'abc' }, () => createApp({ logger: false }));
    await expect(failure).rejects.toThrow(/WRITE_BACK_BATCH_SIZE.*abc/);
  });

  it('fails start-up on an out-of-range variable, naming the variable rather than the option', async () => {
    const failure = withDemoEnv({ ...base(), WRITE_BACK_FLUSH_CONCURRENCY: '0' }, () => createApp({ logger: false }));
    await expect(failure).rejects.toThrow(/WRITE_BACK_FLUSH_CONCURRENCY/);
  });

  it('fails start-up on a bad PORT or DATABASE_URL', async () => {
    await expect(withDemoEnv({ ...base(), PORT: 'http' }, () => createApp({ logger: false }))).rejects.toThrow(/PORT/);
    await expect(
      withDemoEnv({ ...base(), DATABASE_URL: 'mysql://localhost/db' }, () => createApp({ logger: false })),
    ).rejects.toThrow(/DATABASE_URL/);
  });

  it('leaves process.env as it was', () => {
    expect(demoEnvOf(process.env)).toEqual(demoEnvAtStart);
  });
});
