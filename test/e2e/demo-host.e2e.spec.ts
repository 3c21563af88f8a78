import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseUrl, freshSchema } from '../support/database.js';
import { buildDemo, startDemo, type DemoProcess } from '../support/demo-process.js';

/** Resolves true if a TCP connection to host:port is accepted, false if refused. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('the demo process binds to HOST and warns when API_TOKEN is unset', () => {
  beforeAll(() => buildDemo(), 180_000);
  const running: DemoProcess[] = [];
  afterAll(async () => {
    for (const demo of running) {
      if (demo.child.exitCode === null) demo.child.kill('SIGTERM');
      await demo.exited;
    }
  });

  it('with HOST=127.0.0.1 listens on that address only, and says so', async () => {
    const demo = await startDemo({ DATABASE_URL: databaseUrl(), WRITE_BACK_SCHEMA: freshSchema(), HOST: '127.0.0.1' });
    running.push(demo);
    const port = Number(new URL(demo.url).port);
    expect(await accepts('127.0.0.1', port)).toBe(true);
    // Bound to every interface (no HOST), the IPv6 loopback would be accepted too.
    expect(await accepts('::1', port)).toBe(false);
    expect(demo.output()).toContain(`listening on http://127.0.0.1:${port}`);
    expect(demo.output()).toMatch(/API_TOKEN is not set/);
  });

  it('with API_TOKEN set does not warn, and refuses writes without it', async () => {
    const demo = await startDemo({ DATABASE_URL: databaseUrl(), WRITE_BACK_SCHEMA: freshSchema(), API_TOKEN: 'process-token-0123456789abcdef' });
    running.push(demo);
    const put = await fetch(`${demo.url}/kv/k`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '1' });
    expect(put.status).toBe(401);
    expect(demo.output()).not.toMatch(/API_TOKEN is not set/);
  });
});
