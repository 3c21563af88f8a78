import type { NestExpressApplication } from '@nestjs/platform-express';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/config/create-app.js';
import { databaseUrl, freshSchema } from '../support/database.js';
import { withDemoEnv } from '../support/demo-env.js';

/**
 * The documented answers of each route. Every route the app serves must be here and in the document, with
 * exactly these status codes: a new route or a new error answer has to be documented before this passes.
 */
const EXPECTED: Record<string, string[]> = {
  'put /kv/{key}': ['204', '400', '401', '413', '415', '502', '503'],
  'get /kv/{key}': ['200', '400', '404'],
  'delete /kv/{key}': ['204', '400', '401', '415', '502', '503'],
  'post /kv/{key}/increment': ['204', '400', '401', '415', '502', '503'],
  'patch /kv/{key}': ['204', '400', '401', '415', '502', '503'],
  'put /kv': ['400', '401', '415'],
  'get /kv': ['400'],
  'delete /kv': ['400', '401', '415'],
  'post /admin/flush': ['200', '400', '401', '415', '503'],
  'get /admin/stats': ['200', '401'],
  'get /admin/dead-letters': ['200', '400', '401'],
  'post /admin/dead-letters/{id}/replay': ['200', '400', '401', '404', '415', '503'],
  'delete /admin/dead-letters/{id}': ['204', '400', '401', '404', '415'],
  'get /health/live': ['200', '503'],
  'get /health/ready': ['200', '503'],
  'get /metrics': ['200'],
  'put /articles/{id}': ['204', '400', '401', '415', '503'],
  'patch /articles/{id}': ['204', '400', '401', '404', '415', '503'],
  'post /articles/{id}/view': ['204', '401', '404', '415', '503'],
  'get /articles/{id}': ['200', '404'],
};

/** Query parameters each operation must document. */
const EXPECTED_QUERY: Record<string, string[]> = {
  'put /kv/{key}': ['priority', 'writeThrough'],
  'delete /kv/{key}': ['priority', 'writeThrough'],
  'post /kv/{key}/increment': ['priority', 'writeThrough'],
  'patch /kv/{key}': ['priority', 'writeThrough'],
  'post /admin/flush': ['timeoutMs'],
  'get /admin/dead-letters': ['afterId', 'key', 'limit'],
};

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

/** The routes Express really serves (from its router), as `method /path/{param}`, without Swagger's own. */
function servedRoutes(app: NestExpressApplication): string[] {
  const router = (app.getHttpAdapter().getInstance() as { router: { stack: { route?: { path: string; methods: Record<string, boolean> } }[] } }).router;
  const routes: string[] = [];
  for (const layer of router.stack) {
    if (layer.route === undefined || layer.route.path.startsWith('/docs')) continue;
    const path = layer.route.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    for (const [method, on] of Object.entries(layer.route.methods)) if (on && method !== '_all') routes.push(`${method} ${path}`);
  }
  return routes.sort();
}

describe('OpenAPI document of the demo (/docs, /docs-json)', () => {
  let app: NestExpressApplication;
  let base: string;
  let doc: any;

  beforeAll(async () => {
    app = await withDemoEnv(
      { DATABASE_URL: databaseUrl(), WRITE_BACK_SCHEMA: freshSchema(), WRITE_BACK_AUTO_FLUSH: 'false' },
      () => createApp({ logger: ['error'] }),
    );
    await app.listen(0, '127.0.0.1');
    base = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
    const response = await fetch(`${base}/docs-json`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('application/json');
    doc = await response.json();
  });
  afterAll(async () => app?.close());

  const operations = () =>
    Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(([path, item]) =>
      Object.entries(item)
        .filter(([method]) => HTTP_METHODS.includes(method))
        .map(([method, operation]) => ({ id: `${method} ${path}`, operation })),
    );

  /** Follows a `$ref` into components.schemas. */
  const resolve = (schema: any): any => (schema?.$ref ? doc.components.schemas[schema.$ref.split('/').pop()] : schema);

  it('documents exactly the routes the app serves, each with its status codes', () => {
    expect(doc.openapi).toMatch(/^3\./);
    const documented = operations().map((o) => o.id).sort();
    expect(documented).toEqual(servedRoutes(app));
    expect(documented).toEqual(Object.keys(EXPECTED).sort());
    for (const { id, operation } of operations()) {
      expect(Object.keys(operation.responses).sort(), id).toEqual(EXPECTED[id]);
      expect(operation.summary, `${id} has a summary`).toEqual(expect.any(String));
      for (const [status, response] of Object.entries<any>(operation.responses)) {
        expect(response.description, `${id} ${status} has a description`).toEqual(expect.any(String));
        // Every answer with a body has a schema, and every $ref points at a declared schema.
        if (status === '204') {
          expect(response.content, `${id} 204 has no body`).toBeUndefined();
          continue;
        }
        const media = Object.values<any>(response.content ?? {});
        expect(media.length, `${id} ${status} has content`).toBeGreaterThan(0);
        for (const { schema } of media) {
          expect(schema, `${id} ${status} has a schema`).toBeDefined();
          const target = schema.items ?? schema;
          if (target.$ref) expect(resolve(target), `${target.$ref} is declared`).toBeDefined();
        }
      }
    }
  });

  it('documents the query parameters, the path parameters and the any-JSON request body', () => {
    for (const { id, operation } of operations()) {
      const parameters: any[] = operation.parameters ?? [];
      const query = parameters.filter((p) => p.in === 'query').map((p) => p.name).sort();
      expect(query, id).toEqual((EXPECTED_QUERY[id] ?? []).sort());
      for (const name of id.match(/\{(\w+)\}/g)?.map((m) => m.slice(1, -1)) ?? []) {
        expect(parameters.find((p) => p.in === 'path' && p.name === name), `${id} documents {${name}}`).toMatchObject({ required: true });
      }
      for (const p of parameters.filter((p) => p.in === 'query')) expect(p.required, `${id} ?${p.name} is optional`).toBe(false);
    }
    const put = doc.paths['/kv/{key}'].put;
    const priority = put.parameters.find((p: any) => p.name === 'priority');
    expect(priority.schema.enum).toEqual(['high', 'normal', 'low']);
    expect(put.parameters.find((p: any) => p.name === 'writeThrough').schema.type).toBe('boolean');
    expect(put.requestBody.required).toBe(true);
    const body = put.requestBody.content['application/json'].schema;
    expect(body.nullable).toBe(true);
    expect(body.oneOf.map((s: any) => s.type).sort()).toEqual(['array', 'boolean', 'number', 'object', 'string']);
    expect(doc.paths['/kv/{key}'].get.responses['200'].content['application/json'].schema).toEqual(body);
    expect(doc.paths['/metrics'].get.responses['200'].content).toHaveProperty('text/plain');
  });

  it('documents the bearer token (API_TOKEN) on every mutating and admin route, and only there', () => {
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    for (const { id, operation } of operations()) {
      const needsToken = !id.startsWith('get ') || id.includes(' /admin/');
      const documented = (operation.security ?? []).some((requirement: Record<string, unknown>) => 'bearer' in requirement);
      expect(documented, id).toBe(needsToken);
      expect(Object.keys(operation.responses).includes('401'), `${id} documents 401`).toBe(needsToken);
    }
  });

  it('describes the bodies the app really sends (stats, flush report, errors, dead letters, health)', async () => {
    const propertiesOf = (id: string, status: string) => {
      const [method, path] = id.split(' ');
      const schema = doc.paths[path][method].responses[status].content['application/json'].schema;
      return Object.keys(resolve(schema.items ?? schema).properties).sort();
    };
    const json = async (method: string, path: string, body?: unknown) => {
      const response = await fetch(base + path, {
        method,
        body: body === undefined ? undefined : JSON.stringify(body),
        headers: body === undefined && method !== 'POST' ? {} : { 'content-type': 'application/json' },
      });
      return { status: response.status, body: (response.status === 204 ? undefined : await response.json()) as any };
    };

    expect((await json('PUT', '/kv/openapi', { a: 1 })).status).toBe(204);
    const stats = await json('GET', '/admin/stats');
    expect(Object.keys(stats.body).sort()).toEqual(propertiesOf('get /admin/stats', '200'));
    const flush = await json('POST', '/admin/flush');
    expect(Object.keys(flush.body).sort()).toEqual(propertiesOf('post /admin/flush', '200'));
    const missing = await json('GET', '/kv/nothing-here');
    expect(missing.status).toBe(404);
    expect(Object.keys(missing.body).sort()).toEqual(propertiesOf('get /kv/{key}', '404'));
    const badPriority = await json('PUT', '/kv/openapi?priority=bogus', 1);
    expect(badPriority.status).toBe(400);
    expect(Object.keys(badPriority.body).sort()).toEqual(propertiesOf('put /kv/{key}', '400'));
    const letters = await json('GET', '/admin/dead-letters');
    expect(letters).toEqual({ status: 200, body: [] });
    const unknownLetter = await json('POST', '/admin/dead-letters/999999/replay');
    expect(unknownLetter.status).toBe(404);
    expect(Object.keys(unknownLetter.body).sort()).toEqual(propertiesOf('post /admin/dead-letters/{id}/replay', '404'));
    const ready = await json('GET', '/health/ready');
    expect(ready.status).toBe(200);
    const health = propertiesOf('get /health/ready', '200');
    for (const field of Object.keys(ready.body)) expect(health).toContain(field);
  });

  it('serves the Swagger UI as HTML at /docs', async () => {
    const response = await fetch(`${base}/docs`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/html');
    const html = await response.text();
    expect(html).toContain('swagger-ui');
    const init = await fetch(`${base}/docs/swagger-ui-init.js`);
    expect(init.status).toBe(200);
    expect(await init.text()).toContain('/kv/{key}');
  });
});
