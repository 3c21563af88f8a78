import type { NestExpressApplication } from '@nestjs/platform-express';
import { readdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/config/create-app.js';
import { withDemoEnv } from '../support/demo-env.js';
import { tempDir } from '../support/temp-dir.js';

/** Boots the demo without DATABASE_URL (embedded PGlite on `dataDir`) on a free port. */
async function startEmbedded(dataDir: string): Promise<{ app: NestExpressApplication; base: string }> {
  const app = await withDemoEnv({ WRITE_BACK_DEMO_DATA_DIR: dataDir, WRITE_BACK_AUTO_FLUSH: 'false' }, () =>
    createApp({ logger: ['error', 'warn'] }),
  );
  await app.listen(0, '127.0.0.1');
  return { app, base: `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}` };
}

describe('demo service on embedded Postgres (no DATABASE_URL)', () => {
  let root: string;
  let current: NestExpressApplication | undefined;

  beforeAll(async () => {
    root = await tempDir('write-back-demo-');
  });
  afterAll(async () => {
    await current?.close();
  });

  it('keeps flushed data across a restart on the same data directory', async () => {
    const dataDir = path.join(root, 'pglite');
    const value = { greeting: 'hello', list: [1, 2, 3] };

    const first = await startEmbedded(dataDir);
    current = first.app;
    const put = await fetch(`${first.base}/kv/persisted`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(value),
    });
    expect(put.status).toBe(204);
    // One data directory, one process: a second instance is refused instead of corrupting it.
    const second = withDemoEnv({ WRITE_BACK_DEMO_DATA_DIR: dataDir }, () => createApp({ logger: false }));
    await expect(second).rejects.toThrow(/in use by (this )?process/);

    const flushed = await fetch(`${first.base}/admin/flush`, { method: 'POST', headers: { 'content-type': 'application/json' } });
    expect(await flushed.json()).toMatchObject({ committed: 1, deadLettered: 0 });
    // Written after the flush: the shutdown drain must persist it before the embedded server closes.
    await fetch(`${first.base}/kv/drained`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '"bye"' });
    await first.app.close();
    current = undefined;
    expect((await readdir(dataDir)).length).toBeGreaterThan(0);
    expect(await readdir(root)).toEqual(['pglite']); // the lock file went with the server

    const restarted = await startEmbedded(dataDir);
    current = restarted.app;
    const got = await fetch(`${restarted.base}/kv/persisted`);
    expect(got.status).toBe(200);
    expect(await got.json()).toEqual(value);
    expect(await (await fetch(`${restarted.base}/kv/drained`)).json()).toBe('bye');
    // Served from the database, not from memory: the new instance had to load both keys.
    const stats = (await (await fetch(`${restarted.base}/admin/stats`)).json()) as { loads: number };
    expect(stats.loads).toBe(2);
    const ready = await fetch(`${restarted.base}/health/ready`);
    expect(ready.status).toBe(200);
  });
});
