import { afterEach, describe, expect, it } from 'vitest';
import { freshSchema, tableRows } from '../support/database.js';
import { startDemoApp, type DemoApp } from '../support/demo-app.js';

describe('demo: POST /kv/:key/increment and PATCH /kv/:key (merge-patch+json)', () => {
  const open: DemoApp[] = [];
  afterEach(async () => {
    while (open.length > 0) await open.pop()!.close();
  });

  it('counts through HTTP on two replicas of one database, exactly', async () => {
    const schema = freshSchema();
    const a = await startDemoApp({}, schema);
    open.push(a);
    const b = await startDemoApp({}, schema);
    open.push(b);
    const increments = Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? a : b).request('POST', `/kv/views/increment`, 1));
    const fields = Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? a : b).request('POST', `/kv/article/increment`, { likes: 1, shares: 2 }));
    expect((await Promise.all([...increments, ...fields])).every((r) => r.status === 204)).toBe(true);
    expect((await a.send('POST', '/admin/flush', undefined, 'application/json')).status).toBe(200);
    expect((await b.send('POST', '/admin/flush', undefined, 'application/json')).status).toBe(200);
    const rows = await tableRows(a.sql);
    expect(rows.get('views')?.value).toBe(200);
    expect(rows.get('article')?.value).toEqual({ likes: 50, shares: 100 });
    expect((await a.request('GET', '/kv/views')).body).toBe(200);
    expect((await b.request('GET', '/kv/article')).body).toEqual({ likes: 50, shares: 100 });
  });

  it('merges a patch into the stored object; other fields stay', async () => {
    const demo = await startDemoApp();
    open.push(demo);
    expect((await demo.request('PUT', '/kv/user', { name: 'Ada', prefs: { theme: 'dark' }, tmp: 1 })).status).toBe(204);
    const patched = await demo.send('PATCH', '/kv/user', JSON.stringify({ prefs: { lang: 'fr' }, tmp: null }), 'application/merge-patch+json');
    expect(patched.status).toBe(204);
    expect((await demo.request('GET', '/kv/user')).body).toEqual({ name: 'Ada', prefs: { theme: 'dark', lang: 'fr' } });
    expect((await demo.send('POST', '/admin/flush', undefined, 'application/json')).status).toBe(200);
    expect((await tableRows(demo.sql)).get('user')?.value).toEqual({ name: 'Ada', prefs: { theme: 'dark', lang: 'fr' } });
  });

  it('refuses bad bodies with 400 and a plain JSON PATCH with 415, changing nothing', async () => {
    const demo = await startDemoApp();
    open.push(demo);
    for (const body of ['1.5', '"1"', '{}', '{"a":"x"}', '[1]', 'null', '9007199254740992']) {
      const response = await demo.send('POST', '/kv/c/increment', body, 'application/json');
      expect(response.status, body).toBe(400);
      expect(response.body).toMatchObject({ statusCode: 400 });
    }
    expect((await demo.send('POST', '/kv/c/increment', undefined, 'application/json')).status).toBe(400);
    // Without a JSON content type the request never runs (no cross-site form post): 415.
    expect((await demo.send('POST', '/kv/c/increment', '1', 'text/plain')).status).toBe(415);
    expect((await demo.send('PATCH', '/kv/c', '{"a":1}', 'application/json')).status).toBe(415);
    expect((await demo.send('PATCH', '/kv/c', '[1]', 'application/merge-patch+json')).status).toBe(400);
    expect((await demo.request('GET', '/kv/c')).status).toBe(404);
  });
});
