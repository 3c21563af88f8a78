import net from 'node:net';
import pg from 'pg';

export interface TestDatabase {
  kind: 'postgres' | 'pglite';
  url: string;
  description: string;
  stop(): Promise<void>;
}

const DEFAULT_SERVER_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Creates `write_back_test_<pid>` on a real server and returns its URL, or starts PGlite when no server is
 * reachable and fallback is allowed.
 */
export async function startTestDatabase(): Promise<TestDatabase> {
  const required = process.env.WRITE_BACK_TEST_REQUIRE_POSTGRES === '1';
  // WRITE_BACK_TEST_DATABASE=pglite runs the suite as a machine without Postgres would.
  if (process.env.WRITE_BACK_TEST_DATABASE === 'pglite') {
    if (required) throw new Error('WRITE_BACK_TEST_DATABASE=pglite contradicts WRITE_BACK_TEST_REQUIRE_POSTGRES=1');
    return startPglite();
  }
  // An empty DATABASE_URL means unset.
  const configured = process.env.DATABASE_URL?.trim() || undefined;
  const serverUrl = configured ?? DEFAULT_SERVER_URL;
  const parsed = new URL(serverUrl);
  const reachable = await canConnect(parsed.hostname, Number(parsed.port || 5432));
  if (reachable) return createServerDatabase(serverUrl);
  if (required) {
    throw new Error(
      `WRITE_BACK_TEST_REQUIRE_POSTGRES=1 but no Postgres answers at ${parsed.hostname}:${parsed.port || 5432}; ` +
        'start it (pg_ctlcluster ... start) or set DATABASE_URL.',
    );
  }
  if (configured) throw new Error(`DATABASE_URL is set but ${parsed.host} is not reachable`);
  return startPglite();
}

async function createServerDatabase(serverUrl: string): Promise<TestDatabase> {
  const name = `write_back_test_${process.pid}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    kind: 'postgres',
    url: url.toString(),
    description: `database ${name} on ${url.host}`,
    async stop() {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

async function startPglite(): Promise<TestDatabase> {
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  const db = await PGlite.create();
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 64 });
  await server.start();
  const address = server.getServerConn();
  return {
    kind: 'pglite',
    url: `postgres://postgres@${address}/postgres?sslmode=disable`,
    description: `embedded PGlite at ${address} (no Postgres server was reachable)`,
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}
