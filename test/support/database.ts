import pg from 'pg';
import { inject } from 'vitest';
import { sleep } from './wait.js';

/** The run's database (test/support/global-setup.ts): a real server, or embedded PGlite when none answers. */
export const databaseUrl = (): string => inject('databaseUrl');
export const isPglite = (): boolean => inject('databaseKind') === 'pglite';
/** Tests that need a real server process (locks held across connections, killing backends). */
export const NEEDS_SERVER = 'needs a real Postgres server (embedded PGlite serializes every query)';

let schemaCounter = 0;

/** A fresh schema per test, so specs running in parallel never share a table. */
export function freshSchema(): string {
  return `t_${process.pid}_${Date.now().toString(36)}_${schemaCounter++}`;
}

/** A plain pg client on the test database (direct, never through a proxy), with `search_path` set to `schema`. */
export async function connectSql(schema?: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: databaseUrl() });
  await client.connect();
  if (schema) await client.query(`SET search_path TO "${schema}"`);
  return client;
}

/** `connectSql`, retrying while the server restarts. */
export async function connectRetrying(schema?: string, timeoutMs = 30_000): Promise<pg.Client> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await connectSql(schema);
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(100);
    }
  }
}

/** The rows of write_back_entries as key -> { value, version }. */
export async function tableRows(sql: pg.Client): Promise<Map<string, { value: unknown; version: number }>> {
  const result = await sql.query('SELECT key, value, version::text AS version FROM write_back_entries ORDER BY key');
  return new Map(result.rows.map((r) => [r.key as string, { value: r.value, version: Number(r.version) }]));
}

/** Holds an exclusive lock on the table from another connection, so the next flush blocks inside Postgres. */
export async function lockTable(t: { schema: string }): Promise<{ release(): Promise<void>; client: pg.Client }> {
  const client = await connectSql(t.schema);
  await client.query('BEGIN');
  await client.query('LOCK TABLE write_back_entries IN EXCLUSIVE MODE');
  return {
    client,
    async release() {
      await client.query('COMMIT');
      await client.end();
    },
  };
}

/** The module's migrations, in the order they run (what `write_back_migrations` holds after a start). */
export const WRITE_BACK_MIGRATION_NAMES = [
  'CreateWriteBackTables1764130000000',
  'CreateWriteBackTombstones1764140000000',
  'IndexWriteBackTombstonesDeletedAt1764150000000',
  'CreateWriteBackDeltas1764160000000',
  'CreateWriteBackClock1764170000000',
  'AddWriteBackDeadLetterEntity1764180000000',
] as const;
