import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectSql, databaseUrl, freshSchema, tableRows } from '../support/database.js';
import { buildDemo, startDemo, type DemoProcess } from '../support/demo-process.js';
import { sleep, until } from '../support/wait.js';

const KEYS = 400;
const SHUTDOWN_TIMEOUT_MS = 15_000;
/** How long the trigger below holds each upsert statement: the drain takes at least this long. */
const SLOW_FLUSH_SECONDS = 2;

interface Observation {
  at: number;
  status: number;
  /** The `Connection` header of the answer. */
  connection: string | null;
  body: any;
}

/**
 * Polls GET /health/ready back to back until the server stops answering, recording every answer. Runs until
 * `stop()` or the first connection error (the HTTP server closed).
 */
function pollReadiness(url: string): { observations: Observation[]; stop: () => Promise<void> } {
  const observations: Observation[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const response = await fetch(`${url}/health/ready`);
        observations.push({ at: Date.now(), status: response.status, connection: response.headers.get('connection'), body: await response.json() });
      } catch {
        return;
      }
    }
  })();
  return {
    observations,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

async function put(demo: DemoProcess, key: string, value: unknown): Promise<Response> {
  return fetch(`${demo.url}/kv/${encodeURIComponent(key)}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(value),
  });
}

describe('graceful shutdown of the demo process (SIGTERM)', () => {
  beforeAll(() => buildDemo(), 180_000);
  const running: DemoProcess[] = [];
  afterAll(() => {
    for (const demo of running) if (demo.child.exitCode === null) demo.child.kill('SIGKILL');
  });

  it('turns readiness down, drains every pending write and exits 0 within shutdownTimeoutMs', async () => {
    const schema = freshSchema();
    const demo = await startDemo({
      DATABASE_URL: databaseUrl(),
      WRITE_BACK_SCHEMA: schema,
      // No timer flush during the test: every write is still pending when SIGTERM arrives.
      WRITE_BACK_FLUSH_INTERVAL_MS: '60000',
      WRITE_BACK_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    });
    running.push(demo);
    const sql = await connectSql(schema);
    try {
      const queue = Array.from({ length: KEYS }, (_, i) => i);
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
            expect((await put(demo, `sig:${i}`, { i, pad: 'x'.repeat(64) })).status).toBe(204);
          }
        }),
      );
      const stats = (await (await fetch(`${demo.url}/admin/stats`)).json()) as { dirty: number };
      expect(stats.dirty).toBe(KEYS);
      expect((await tableRows(sql)).size).toBe(0);
      expect((await fetch(`${demo.url}/health/ready`)).status).toBe(200);

      // A slow Postgres: each upsert statement waits, so the drain lasts long enough to watch readiness.
      await sql.query(`
        CREATE FUNCTION slow_flush() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(${SLOW_FLUSH_SECONDS}); RETURN NULL; END $$`);
      await sql.query('CREATE TRIGGER slow_flush BEFORE INSERT ON write_back_entries FOR EACH STATEMENT EXECUTE FUNCTION slow_flush()');

      const readiness = pollReadiness(demo.url);
      await until(() => readiness.observations.length > 0, 10_000, 'a first readiness observation');
      const signalledAt = Date.now();
      demo.child.kill('SIGTERM');

      // Once readiness is down the drain is running while HTTP still answers: a new write is refused, not lost.
      let refusedWrite: number | undefined;
      while (refusedWrite === undefined && demo.child.exitCode === null) {
        if (readiness.observations.some((o) => o.at > signalledAt && o.status === 503)) {
          refusedWrite = await put(demo, 'late', { late: true }).then((r) => r.status, () => -1);
        }
        await sleep(5);
      }

      const code = await demo.exited;
      const elapsed = Date.now() - signalledAt;
      await readiness.stop();
      const summary = readiness.observations.map((o) => `${o.at - signalledAt}:${o.status}`);
      console.log(`[sigterm] exit ${code} after ${elapsed} ms; readiness (ms after SIGTERM: status) ${summary.slice(0, 3).join(' ')} ... ${summary.slice(-2).join(' ')} (${summary.length} answers)`);

      expect(code, demo.output()).toBe(0);
      expect(elapsed).toBeLessThan(SHUTDOWN_TIMEOUT_MS + 5_000);
      expect(elapsed).toBeGreaterThanOrEqual(SLOW_FLUSH_SECONDS * 1000 - 100);

      const afterSignal = readiness.observations.filter((o) => o.at > signalledAt);
      const down = afterSignal.filter((o) => o.status === 503);
      expect(down.length, 'readiness was observed down before the process exited').toBeGreaterThan(0);
      // Terminus answers 503 "shutting_down" from its own shutdown hook on; the module's indicator says why too once
      // its drain runs (the module is global, so its hook may run after terminus').
      // (While terminus is shutting down it lists every indicator under `details`, `error` stays empty.)
      const ours = (o: (typeof down)[number]) =>
        (o.body?.details?.writeBack?.reasons ?? o.body?.error?.writeBack?.reasons)?.includes('shutting down') === true;
      for (const o of down) expect(o.body?.status === 'shutting_down' || ours(o), JSON.stringify(o)).toBe(true);
      expect(down.some(ours), 'the indicator reported its drain').toBe(true);
      // Once down it stays down until the server closes.
      expect(afterSignal.slice(afterSignal.indexOf(down[0])).every((o) => o.status === 503)).toBe(true);
      expect(refusedWrite).toBe(503);
      // Keep-alive connections are closed after each answer once shutdown began, so none holds the exit back.
      // (A probe already past the middleware when shutdown began may still answer keep-alive, once.)
      expect(down.slice(1).every((o) => o.connection === 'close')).toBe(true);
      expect(readiness.observations[0].connection).not.toBe('close');

      expect(demo.output()).toMatch(new RegExp(`Shutdown drain flushed ${KEYS} entries in \\d+ ms`));
      const rows = await tableRows(sql);
      expect(rows.size).toBe(KEYS);
      for (let i = 0; i < KEYS; i++) expect(rows.get(`sig:${i}`)?.value).toEqual({ i, pad: 'x'.repeat(64) });
      expect(rows.has('late')).toBe(false);
    } finally {
      await sql.end();
    }
  }, 90_000);
});
