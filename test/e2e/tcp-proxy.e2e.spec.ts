import net from 'node:net';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { databaseUrl } from '../support/database.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { until } from '../support/wait.js';

/** An echo server: what a test sends through the proxy comes back. */
async function startEcho(): Promise<{ server: net.Server; url: string }> {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return { server, url: `postgres://user@127.0.0.1:${port}/db` };
}

interface Client {
  socket: net.Socket;
  received: () => string;
  closed: Promise<string>;
}

function connect(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    let data = '';
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('data', (chunk) => (data += chunk));
    const closed = new Promise<string>((done) => {
      let reason = 'end';
      socket.on('error', (error: NodeJS.ErrnoException) => (reason = error.code ?? error.message));
      socket.on('close', () => done(reason));
    });
    socket.once('connect', () => resolve({ socket, received: () => data, closed }));
    socket.once('error', reject);
  });
}

async function echoRoundTrip(client: Client, text: string): Promise<number> {
  const before = client.received().length;
  const started = Date.now();
  client.socket.write(text);
  await until(() => client.received().length >= before + text.length, 5000, `echo of "${text}"`);
  return Date.now() - started;
}

describe('TcpProxy (fault injection between a client and Postgres)', () => {
  let echo: { server: net.Server; url: string };
  let proxy: TcpProxy;

  beforeEach(async () => {
    echo = await startEcho();
    proxy = await TcpProxy.start(echo.url);
  });

  afterEach(async () => {
    await proxy.close();
    await new Promise((resolve) => echo.server.close(resolve));
  });

  it('passes bytes both ways, in order, and rewrites only host and port of the URL', async () => {
    expect(proxy.url).toBe(`postgres://user@127.0.0.1:${proxy.port}/db`);
    const client = await connect(proxy.port);
    const big = Array.from({ length: 20_000 }, (_, i) => String(i % 10)).join('');
    await echoRoundTrip(client, 'hello ');
    await echoRoundTrip(client, big);
    expect(client.received()).toBe(`hello ${big}`);
    expect(proxy.openConnections).toBe(1);
    client.socket.end();
    expect(await client.closed).toBe('end');
    await until(() => proxy.openConnections === 0, 5000, 'the link to close');
  });

  it('adds latency per chunk in both directions, keeps order, and restore removes it', async () => {
    const client = await connect(proxy.port);
    proxy.setLatency(60);
    const slow = await echoRoundTrip(client, 'a');
    expect(slow).toBeGreaterThanOrEqual(110);
    for (let i = 0; i < 20; i++) client.socket.write(`${i},`);
    await until(() => client.received().endsWith('19,'), 5000, 'the burst');
    expect(client.received()).toBe(`a${Array.from({ length: 20 }, (_, i) => `${i},`).join('')}`);
    proxy.restore();
    // Without the latency a round trip is far below 2 x 60 ms (best of three, so a busy machine cannot fake it).
    const fast = Math.min(await echoRoundTrip(client, 'b'), await echoRoundTrip(client, 'c'), await echoRoundTrip(client, 'd'));
    expect(fast).toBeLessThan(100);
    client.socket.destroy();
  });

  it('cut closes every open connection; new ones still pass', async () => {
    const clients = await Promise.all([connect(proxy.port), connect(proxy.port), connect(proxy.port)]);
    await echoRoundTrip(clients[0], 'x');
    await until(() => proxy.openConnections === 3, 5000, 'three links');
    expect(proxy.cut()).toBe(3);
    for (const client of clients) expect(await client.closed).toMatch(/ECONNRESET|end/);
    expect(proxy.openConnections).toBe(0);
    const again = await connect(proxy.port);
    await echoRoundTrip(again, 'y');
    again.socket.destroy();
  });

  it('resetOnNextSend leaves open connections quiet until the client sends, then resets them; new ones pass', async () => {
    const armed = await connect(proxy.port);
    await echoRoundTrip(armed, 'before');
    await until(() => proxy.openConnections === 1, 5000, 'one link');
    expect(proxy.resetOnNextSend()).toBe(1);
    const fresh = await connect(proxy.port);
    await echoRoundTrip(fresh, 'new links pass');
    expect(armed.socket.destroyed).toBe(false);
    armed.socket.write('after');
    expect(await armed.closed).toMatch(/ECONNRESET|end/);
    expect(armed.received()).toBe('before');
    fresh.socket.destroy();
  });

  it('refuse resets new connections but keeps open ones; restore accepts again', async () => {
    const open = await connect(proxy.port);
    proxy.refuse();
    const refused = await connect(proxy.port).then((c) => c.closed, (e: NodeJS.ErrnoException) => e.code ?? 'error');
    expect(refused).toMatch(/ECONNRESET|end/);
    expect(proxy.refused).toBe(1);
    await echoRoundTrip(open, 'still here');
    proxy.outage();
    expect(await open.closed).toMatch(/ECONNRESET|end/);
    proxy.restore();
    const back = await connect(proxy.port);
    await echoRoundTrip(back, 'back');
    back.socket.destroy();
  });

  it('blackhole drops bytes both ways without closing anything; those links stay silent after restore', async () => {
    const open = await connect(proxy.port);
    await echoRoundTrip(open, 'before');
    proxy.blackhole();
    const during = await connect(proxy.port);
    open.socket.write('lost');
    during.socket.write('lost too');
    // Proof that nothing comes back: a fresh link after restore round-trips while the silent ones stay quiet.
    proxy.restore();
    const after = await connect(proxy.port);
    await echoRoundTrip(after, 'after');
    open.socket.write('still lost');
    await echoRoundTrip(after, 'again');
    expect(open.received()).toBe('before');
    expect(during.received()).toBe('');
    expect(open.socket.destroyed || during.socket.destroyed).toBe(false);
    expect(proxy.cut()).toBe(3);
    expect(await open.closed).toMatch(/ECONNRESET|end/);
    expect(await during.closed).toMatch(/ECONNRESET|end/);
    after.socket.destroy();
  });
});

describe('TcpProxy in front of Postgres', () => {
  it('a pg client works through it, fails on cut and refuse, and works again after restore', async () => {
    const proxy = await TcpProxy.start(databaseUrl());
    try {
      const query = async () => {
        const client = new pg.Client({ connectionString: proxy.url, connectionTimeoutMillis: 5000 });
        client.on('error', () => {});
        await client.connect();
        return client;
      };
      const client = await query();
      expect((await client.query('SELECT 1 + 1 AS two')).rows[0].two).toBe(2);
      proxy.cut();
      await expect(client.query('SELECT 1')).rejects.toThrow();
      proxy.refuse();
      await expect(query()).rejects.toThrow();
      proxy.restore();
      const again = await query();
      expect((await again.query('SELECT 2 AS n')).rows[0].n).toBe(2);
      await again.end();
    } finally {
      await proxy.close();
    }
  });
});
