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

/** `count` connected pg clients. */
export async function connectClients(url, count) {
  const clients = [];
  for (let c = 0; c < count; c++) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    clients.push(client);
  }
  return clients;
}

/** The three array parameters of the raw unnest upsert (unnestUpsertSql) for rows `from` to `from + batch - 1`. */
export function unnestBatch(from, batch, key, json, version) {
  const keys = new Array(batch);
  const values = new Array(batch);
  const versions = new Array(batch);
  for (let j = 0; j < batch; j++) {
    const i = from + j;
    keys[j] = key(i);
    values[j] = json(i);
    versions[j] = String(version(i));
  }
  return [keys, values, versions];
}

/**
 * Runs the raw batched upsert in the background until `stop()`: `connections` clients, each sending batches of
 * `batch` rows over `keySpace` keys in turn (the load a flusher puts on Postgres and the disk). `stop()` resolves
 * with the rows written once every client has finished its statement and closed.
 */
export async function startBackgroundIngest(url, table, { connections = 2, batch = 1000, keySpace = 100_000, values }) {
  const clients = await connectClients(url, connections);
  await createEntriesTable(clients[0], table);
  const text = unnestUpsertSql(table);
  const base = Date.now() * 1000;
  const key = (i) => `ingest:${i % keySpace}`;
  const json = (i) => values[i % values.length];
  const version = (i) => base + i;
  let seq = 0;
  let rows = 0;
  let stopped = false;
  const worker = async (client) => {
    while (!stopped) {
      const params = unnestBatch(seq, batch, key, json, version);
      seq += batch;
      await client.query(text, params);
      rows += batch;
    }
  };
  const running = Promise.all(clients.map(worker));
  return {
    async stop() {
      stopped = true;
      await running;
      await Promise.all(clients.map((client) => client.end()));
      return { rows };
    },
  };
}

export { pg };
