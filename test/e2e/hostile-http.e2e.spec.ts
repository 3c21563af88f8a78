import type { NestExpressApplication } from '@nestjs/platform-express';
import net from 'node:net';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/config/create-app.js';
import { databaseUrl, freshSchema, tableRows } from '../support/database.js';
import { bootDemoApp } from '../support/demo-app.js';
import { withDemoEnv } from '../support/demo-env.js';

interface Answer {
  status: number;
  headers: Headers;
  body: any;
}

interface Demo {
  app: NestExpressApplication;
  base: string;
  sql: pg.Client;
  send(method: string, path: string, options?: { body?: string | Uint8Array; headers?: Record<string, string> }): Promise<Answer>;
  writes(): Promise<number>;
  close(): Promise<void>;
}

const JSON_TYPE = { 'content-type': 'application/json' };
const TOKEN = 'a-test-token-of-32-characters-00';

async function startDemo(env: Record<string, string> = {}): Promise<Demo> {
  const { app, base, sql, close } = await bootDemoApp(env);
  const auth: Record<string, string> = env.API_TOKEN ? { authorization: `Bearer ${env.API_TOKEN}` } : {};
  const send: Demo['send'] = async (method, path, options = {}) => {
    const response = await fetch(base + path, { method, body: options.body, headers: options.headers ?? {} });
    const text = await response.text();
    let body: unknown = text;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      // not JSON: kept as text, so a test sees what came back
    }
    return { status: response.status, headers: response.headers, body };
  };
  return {
    app,
    base,
    sql,
    send,
    writes: async () => (await send('GET', '/admin/stats', { headers: auth })).body.writes,
    close,
  };
}

/** A raw HTTP/1.1 exchange, for requests fetch will not send (huge request lines). */
function rawRequest(base: string, request: string): Promise<string> {
  const { port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => socket.end(request));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

const expectErrorBody = (answer: Answer, statusCode: number) => {
  expect(answer.status).toBe(statusCode);
  expect(answer.headers.get('content-type')).toContain('application/json');
  expect(answer.body).toEqual({ statusCode, error: expect.any(String), message: expect.any(String) });
  expect(answer.body.message.length).toBeGreaterThan(0);
};

describe('demo service under hostile input', () => {
  let demo: Demo;

  beforeAll(async () => {
    demo = await startDemo();
  });
  afterAll(async () => demo?.close());

  it('keeps operator routes out of the key namespace: /kv/_stats and /kv/_flush are ordinary keys', async () => {
    for (const key of ['_stats', '_Stats', '_flush']) {
      expect((await demo.send('PUT', `/kv/${key}`, { body: JSON.stringify({ mine: key }), headers: JSON_TYPE })).status).toBe(204);
    }
    for (const key of ['_stats', '_Stats', '_flush']) expect((await demo.send('GET', `/kv/${key}`)).body).toEqual({ mine: key });
    const stats = await demo.send('GET', '/admin/stats');
    expect(stats.status).toBe(200);
    expect(stats.body).toMatchObject({ writes: expect.any(Number), dirty: expect.any(Number) });
    const flushed = await demo.send('POST', '/admin/flush', { headers: JSON_TYPE });
    expect(flushed.status).toBe(200);
    expect((await tableRows(demo.sql)).get('_stats')?.value).toEqual({ mine: '_stats' });
    expect((await demo.send('GET', '/admin/dead-letters')).status).toBe(200);
  });

  it('answers 400 to a body that decodes to no JSON value (BOM only, UTF-16 BOM, white space), and stores nothing', async () => {
    const writes = await demo.writes();
    const bodies: [Uint8Array, string][] = [
      [Uint8Array.from([0xef, 0xbb, 0xbf]), 'application/json'],
      [Uint8Array.from([0xef, 0xbb, 0xbf, 0x20, 0x0a]), 'application/json; charset=utf-8'],
      [Uint8Array.from([0xff, 0xfe]), 'application/json; charset=utf-16le'],
      [Uint8Array.from([0xfe, 0xff]), 'application/json; charset=utf-16be'],
      [Uint8Array.from([0xff, 0xfe]), 'application/json; charset=utf-16'],
      [Uint8Array.from([0x20, 0x0d, 0x0a, 0x09]), 'application/json'],
      // Not UTF-8: decoded leniently it would be stored as U+FFFD.
      [Uint8Array.from([0x22, 0xff, 0x22]), 'application/json'],
      [Uint8Array.from([0xff, 0xfe]), 'application/json'],
    ];
    for (const [body, contentType] of bodies) {
      const answer = await demo.send('PUT', '/kv/bom', { body, headers: { 'content-type': contentType } });
      expectErrorBody(answer, 400);
    }
    expect((await demo.send('GET', '/kv/bom')).status).toBe(404);
    expect(await demo.writes()).toBe(writes);
    // A real UTF-16 JSON text with its byte-order mark is read as what it says.
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"a":"é"}', 'utf16le')]);
    expect((await demo.send('PUT', '/kv/utf16', { body: utf16, headers: { 'content-type': 'application/json; charset=utf-16le' } })).status).toBe(204);
    expect((await demo.send('GET', '/kv/utf16')).body).toEqual({ a: 'é' });
    // A charset JSON is never sent in is refused before anything runs.
    expectErrorBody(await demo.send('PUT', '/kv/latin', { body: '1', headers: { 'content-type': 'application/json; charset=iso-8859-1' } }), 415);
  });

  it('validates every input that reaches SQL: a NUL or an over-long ?key= of the dead letters is a 400, never a 500', async () => {
    for (const query of ['key=%00', 'key=a%00b', `key=${'k'.repeat(513)}`, 'key=', 'afterId=99999999999999999999', 'afterId=-1', 'limit=abc']) {
      const answer = await demo.send('GET', `/admin/dead-letters?${query}`);
      expectErrorBody(answer, 400);
    }
    expectErrorBody(await demo.send('GET', '/admin/dead-letters?key=a&key=b'), 400);
    expectErrorBody(await demo.send('GET', '/kv/a%00b'), 400);
    expectErrorBody(await demo.send('PUT', '/kv/a%00b', { body: '1', headers: JSON_TYPE }), 400);
  });

  it('answers 400 with a body to an empty key, and to an over-long key (not a bare 431)', async () => {
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const answer = await demo.send(method, '/kv/', method === 'PUT' ? { body: '1', headers: JSON_TYPE } : {});
      expectErrorBody(answer, 400);
      expect(answer.body.message).toContain('key');
    }
    const long = await demo.send('PUT', `/kv/${'k'.repeat(20_000)}`, { body: '1', headers: JSON_TYPE });
    expectErrorBody(long, 400);
    expect(long.body.message).toContain('maxKeyLength');
    // Multi-byte keys at the limit still fit the request line (9 bytes per UTF-16 unit URL-encoded).
    const wide = await demo.send('GET', `/kv/${encodeURIComponent('€'.repeat(513))}`);
    expectErrorBody(wide, 400);
    expect(wide.body.message).toContain('maxKeyLength');
    // Beyond what any key needs, Node refuses the headers; the answer still has the JSON body.
    const huge = await rawRequest(demo.base, `GET /kv/${'k'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(huge).toMatch(/^HTTP\/1\.1 431 /);
    const body = JSON.parse(huge.slice(huge.indexOf('\r\n\r\n') + 4));
    expect(body).toEqual({ statusCode: 431, error: 'Request Header Fields Too Large', message: expect.stringContaining('maxKeyLength') });
  });

  it('reports a bad ?priority= as a query parameter', async () => {
    const answer = await demo.send('PUT', '/kv/p?priority=urgent', { body: '1', headers: JSON_TYPE });
    expectErrorBody(answer, 400);
    expect(answer.body.message).toContain('Query parameter "priority"');
    expectErrorBody(await demo.send('DELETE', '/kv/p?priority=high&priority=low'), 400);
  });

  it('answers every error in one shape { statusCode, error, message }: unknown routes, bad JSON, too large, wrong media type', async () => {
    const notFound = await demo.send('GET', '/nothing/here');
    expectErrorBody(notFound, 404);
    expect(notFound.body.error).toBe('Not Found');
    const malformed = await demo.send('PUT', '/kv/x', { body: '{"a":', headers: JSON_TYPE });
    expectErrorBody(malformed, 400);
    expect(malformed.body.error).toBe('Bad Request');
    expectErrorBody(await demo.send('PUT', '/kv/x', { body: JSON.stringify('x'.repeat(3 * 1024 * 1024)), headers: JSON_TYPE }), 413);
    expectErrorBody(await demo.send('PUT', '/kv/x', { body: '{"a":1}', headers: { 'content-type': 'text/plain' } }), 415);
    expectErrorBody(await demo.send('GET', '/admin/dead-letters?limit=0'), 400);
    const typed = await demo.send('PUT', '/kv/x', { body: '"a\\u0000b"', headers: JSON_TYPE });
    expectErrorBody(typed, 400);
    expect(typed.body.error).toBe('WriteBackInvalidValueError');
  });

  it('refuses a JSON number JavaScript cannot hold exactly with a 400, and keeps the ones it can', async () => {
    for (const raw of ['9007199254740993', '12345678901234567890123', '{"id":1,"big":[0.10000000000000001]}', '1e400']) {
      const answer = await demo.send('PUT', '/kv/num', { body: raw, headers: JSON_TYPE });
      expectErrorBody(answer, 400);
      expect(answer.body.message).toMatch(/cannot be stored exactly|not JSON/);
    }
    expect((await demo.send('GET', '/kv/num')).status).toBe(404);
    const exact = '{"a":9007199254740991,"b":0.1,"c":-2.5e-7,"d":1e21,"s":"12345678901234567890123"}';
    expect((await demo.send('PUT', '/kv/num', { body: exact, headers: JSON_TYPE })).status).toBe(204);
    await demo.send('POST', '/admin/flush', { headers: JSON_TYPE });
    expect((await tableRows(demo.sql)).get('num')?.value).toEqual(JSON.parse(exact));
  });

  it('sends no X-Powered-By, and refuses POSTs a cross-site form could send (text/plain, no content type) with 415', async () => {
    expect((await demo.send('GET', '/admin/stats')).headers.get('x-powered-by')).toBeNull();
    await demo.send('PUT', '/kv/csrf', { body: '1', headers: JSON_TYPE });
    const flushesBefore = (await demo.send('GET', '/admin/stats')).body.flushes;
    for (const headers of [{}, { 'content-type': 'text/plain' } as Record<string, string>, { 'content-type': 'application/x-www-form-urlencoded' }, { 'content-type': 'multipart/form-data; boundary=x' }]) {
      expectErrorBody(await demo.send('POST', '/admin/flush', { headers, body: 'content-type' in headers ? 'a=1' : undefined }), 415);
      expectErrorBody(await demo.send('POST', '/admin/dead-letters/1/replay', { headers }), 415);
    }
    expect((await demo.send('GET', '/admin/stats')).body.flushes).toBe(flushesBefore);
    expect((await tableRows(demo.sql)).has('csrf')).toBe(false);
  });
});

describe('demo service with API_TOKEN', () => {
  let demo: Demo;

  beforeAll(async () => {
    demo = await startDemo({ API_TOKEN: TOKEN });
  });
  afterAll(async () => demo?.close());

  const bearer = (token: string) => ({ ...JSON_TYPE, authorization: `Bearer ${token}` });

  it('answers 401 to every mutating and admin route without the token, and changes nothing', async () => {
    expect((await demo.send('PUT', '/kv/kept', { body: '"original"', headers: bearer(TOKEN) })).status).toBe(204);
    await demo.send('POST', '/admin/flush', { headers: bearer(TOKEN) });
    const requests: [string, string, string | undefined][] = [
      ['PUT', '/kv/kept', '"overwritten"'],
      ['DELETE', '/kv/kept', undefined],
      ['POST', '/admin/flush', undefined],
      ['GET', '/admin/stats', undefined],
      ['GET', '/admin/dead-letters', undefined],
      ['POST', '/admin/dead-letters/1/replay', undefined],
      ['DELETE', '/admin/dead-letters/1', undefined],
    ];
    for (const headers of [JSON_TYPE, bearer('wrong-token-of-the-same-length-0'), bearer(`${TOKEN}x`), { ...JSON_TYPE, authorization: TOKEN }, { ...JSON_TYPE, authorization: `Basic ${TOKEN}` }]) {
      for (const [method, path, body] of requests) {
        const answer = await demo.send(method, path, { body, headers });
        expectErrorBody(answer, 401);
        expect(answer.headers.get('www-authenticate')).toBe('Bearer');
      }
    }
    expect((await demo.send('GET', '/kv/kept')).body).toBe('original');
    expect((await tableRows(demo.sql)).get('kept')?.value).toBe('original');
    expect((await demo.send('GET', '/admin/stats', { headers: bearer(TOKEN) })).body.writes).toBe(1);
  });

  it('lets the right token through; key reads, probes and metrics stay open', async () => {
    expect((await demo.send('PUT', '/kv/t', { body: '{"ok":true}', headers: bearer(TOKEN) })).status).toBe(204);
    expect((await demo.send('PUT', '/kv/t2', { body: '1', headers: { ...JSON_TYPE, authorization: `bearer ${TOKEN}` } })).status).toBe(204);
    expect((await demo.send('GET', '/kv/t')).body).toEqual({ ok: true });
    expect((await demo.send('POST', '/admin/flush', { headers: bearer(TOKEN) })).status).toBe(200);
    expect((await demo.send('DELETE', '/kv/t', { headers: bearer(TOKEN) })).status).toBe(204);
    for (const path of ['/health/live', '/health/ready', '/metrics']) expect((await demo.send('GET', path)).status, path).toBe(200);
  });

  it('refuses a token that is too short to protect anything at start-up', async () => {
    const failure = withDemoEnv({ DATABASE_URL: databaseUrl(), WRITE_BACK_SCHEMA: freshSchema(), API_TOKEN: 'short' }, () => createApp({ logger: false }));
    await expect(failure).rejects.toThrow(/API_TOKEN/);
  });
});
