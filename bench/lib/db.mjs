// Postgres helpers: the bench database, baseline tables, plain pg clients.
import pg from 'pg';

export const DEFAULT_SERVER_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

export function withDatabase(serverUrl, database) {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export async function adminQuery(serverUrl, sql, params = []) {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end();
  }
}

/** Creates `write_back_bench_<pid>` and returns its URL. */
export async function createBenchDatabase(serverUrl, name) {
  await adminQuery(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await adminQuery(serverUrl, `CREATE DATABASE ${name}`);
  return withDatabase(serverUrl, name);
}

export async function dropBenchDatabase(serverUrl, name) {
  await adminQuery(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

/** A table shaped like write_back_entries (same columns, same primary key), fresh for one baseline. */
export async function createEntriesTable(client, qualifiedName) {
  await client.query(`DROP TABLE IF EXISTS ${qualifiedName}`);
  await client.query(`
    CREATE TABLE ${qualifiedName} (
      "key" text PRIMARY KEY,
      "value" jsonb NOT NULL,
      "version" bigint NOT NULL,
      "updated_at" timestamptz NOT NULL DEFAULT now()
    )`);
}

/** The single-row guarded upsert a write-through user would run. */
export function singleUpsertSql(table) {
  return `INSERT INTO ${table} AS e ("key", "value", "version", "updated_at") VALUES ($1, $2::jsonb, $3, now())
    ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value", "version" = excluded."version", "updated_at" = excluded."updated_at"
    WHERE e."version" < excluded."version"`;
}

/** The raw batched guarded upsert of PERF.md (unnest of three arrays, one parameter per column). */
export function unnestUpsertSql(table) {
  return `INSERT INTO ${table} AS e ("key", "value", "version", "updated_at")
    SELECT u.key, u.value::jsonb, u.version, now() FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(key, value, version)
    ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value", "version" = excluded."version", "updated_at" = excluded."updated_at"
    WHERE e."version" < excluded."version"`;
}

export { pg };
