import { afterEach, describe, expect, it } from 'vitest';
import { databaseUrl, isPglite, NEEDS_SERVER, tableRows } from '../support/database.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { until } from '../support/wait.js';
import { startWriteBack, type WriteBackTestApp } from '../support/write-back-app.js';

/**
 * A pooled connection whose backend was terminated while it sat idle (a restart, a failover, an operator's
 * pg_terminate_backend) still looks alive to the pool until its next statement fails. A read, and a write-through,
 * that meet it are tried again once on a fresh connection instead of failing.
 *
 * The module connects through a proxy that delays every chunk: the backend's goodbye reaches the pool only after
 * the next statement was sent on the dead connection, as it does when the pool hands out a connection at once.
 */
describe.skipIf(isPglite())(`a connection terminated between two statements (${NEEDS_SERVER})`, () => {
  let t: WriteBackTestApp | undefined;
  let proxy: TcpProxy | undefined;
  afterEach(async () => {
    await t?.close();
    await proxy?.close();
    t = undefined;
    proxy = undefined;
  });

  /** Terminates the backend of the module's only pooled connection and waits until it is gone. */
  async function terminatePooledConnection(app: WriteBackTestApp): Promise<void> {
    const [{ pid }] = (await app.service.dataSource.query('SELECT pg_backend_pid() AS pid')) as { pid: number }[];
    proxy!.setLatency(100);
    await app.sql.query('SELECT pg_terminate_backend($1)', [pid]);
    await until(async () => (await app.sql.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount === 0, 5000, 'the backend to exit');
  }

  it('a get miss after pg_terminate_backend reads on a fresh connection', async () => {
    proxy = await TcpProxy.start(databaseUrl());
    t = await startWriteBack({ url: proxy.url, flushConcurrency: 1, poolSize: 1 });
    await t.sql.query(`INSERT INTO write_back_entries (key, value, version) VALUES ('second', '{"read":2}', 1)`);
    expect(await t.service.get('first')).toBeUndefined();
    const accepted = proxy.accepted;
    await terminatePooledConnection(t);
    expect(await t.service.get('second')).toEqual({ read: 2 });
    expect(proxy.accepted, 'a new connection was opened').toBeGreaterThan(accepted);
  });

  it.each([
    ['with a batch deadline (statementTimeoutMs default)', {}],
    ['without one (statementTimeoutMs 0)', { statementTimeoutMs: 0 }],
  ])('a write-through after pg_terminate_backend commits on a fresh connection instead of failing, %s', async (_name, extra) => {
    proxy = await TcpProxy.start(databaseUrl());
    t = await startWriteBack({ url: proxy.url, flushConcurrency: 1, poolSize: 1, ...extra });
    await t.service.set('before', 1, { writeThrough: true });
    const accepted = proxy.accepted;
    await terminatePooledConnection(t);
    await t.service.set('after', { committed: true }, { writeThrough: true });
    expect((await tableRows(t.sql)).get('after')?.value).toEqual({ committed: true });
    expect(proxy.accepted, 'a new connection was opened').toBeGreaterThan(accepted);
    // The first attempt met the dead connection: it counts as a failed batch write, the retry committed.
    expect(t.service.stats()).toMatchObject({ flushErrors: 1, dirty: 0, deadLettered: 0 });
  });
});
