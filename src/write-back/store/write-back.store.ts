import { randomUUID } from 'node:crypto';
import { DataSource, MigrationExecutor } from 'typeorm';
import { deltaText } from '../cache/delta.js';
import type { PostgresDataSourceOptions } from 'typeorm/driver/postgres/PostgresDataSourceOptions.js';
import type { FlushItem } from '../cache/dirty-set.js';
import { isLostConnection } from '../flush/error-classifier.js';
import { withTimeout } from '../with-timeout.js';
import type { ResolvedWriteBackOptions } from '../write-back.options.js';
import { WRITE_BACK_ENTITIES, WRITE_BACK_MIGRATIONS, WRITE_BACK_MIGRATIONS_TABLE } from './index.js';
import type { WriteBackOperation } from './write-back-dead-letter.entity.js';
import { initializeWithRetry, type ConnectRetry } from './connect-retry.js';
import { isEntityKey, parseEntityKey, storedEntityKey } from '../cache/entity-key.js';
import type { EntityWriter } from '../entities/entity-writer.js';

/** What the flusher records about a row Postgres kept rejecting. */
export interface DeadLetterFailure {
  code: string | undefined;
  message: string;
  attempts: number;
  firstFailedAt: Date;
  lastFailedAt: Date;
}

/** A dead letter as the public API returns it (value parsed, version as a number). */
export interface WriteBackDeadLetter {
  id: string;
  /** For an entity row: `Entity:[primary key values]`. */
  key: string;
  /** The entity (by its TypeORM name) of a row of `WriteBackModule.forFeature`; null for a key-value entry. */
  entity: string | null;
  value: unknown;
  version: number;
  operation: WriteBackOperation;
  errorCode: string | null;
  errorMessage: string;
  attempts: number;
  firstFailedAt: Date;
  lastFailedAt: Date;
}

export interface StoredRow {
  json: string;
  version: number;
}

/**
 * All SQL of the module. A batch travels as one jsonb parameter whatever its size (Postgres allows 65,535
 * parameters per statement); the JSON text serialized at `set` is sent as is.
 */
export class WriteBackStore {
  private readonly entriesTable: string;
  private readonly writeSql: string;
  private readonly loadSql: string;
  private readonly deadLettersTable: string;
  /** Quoted ledger table name, for the entity statements. */
  readonly ledgerTable: string;
  private readonly entityWriters = new Map<string, EntityWriter>();

  /**
   * @param batchDeadlineMs client-side limit of one batch write (0: none). `statement_timeout` is enforced by the
   *   server, so it cannot end a statement the server never received (a silent network partition): past this
   *   deadline the connection is destroyed, the batch fails as a transient error and is retried on a new one.
   */
  constructor(
    readonly dataSource: DataSource,
    schema: string | undefined,
    private readonly batchDeadlineMs = 0,
    /** Whose deltas this store writes: the key of the instance's entries in the delta ledger. */
    readonly origin: string = randomUUID(),
  ) {
    const prefix = schema ? `"${schema}".` : '';
    this.entriesTable = `${prefix}"write_back_entries"`;
    const tombstonesTable = `${prefix}"write_back_tombstones"`;
    // One round trip and one bind parameter per batch: the rows travel as one JSON array into which each value's
    // JSON text (serialized once at set) is pasted as is, so Node does no per-row escaping; Postgres parses it.
    // Every write is guarded by version so the table never goes backwards and replays are idempotent: an upsert
    // applies only above the row's version and above the key's tombstone (the version of its last committed
    // delete); a delete removes an older row and records its tombstone. A batch never holds one key twice (that
    // would be error 21000). The value is wrapped in a one-element array: `-> 0` keeps a JSON null a jsonb null.
    // The statement returns the keys the guard skipped: memory holds an older version than Postgres for those.
    const ledgerTable = `${prefix}"write_back_delta_ledger"`;
    this.ledgerTable = ledgerTable;
    const applyDelta = `${prefix}"write_back_apply_delta"`;
    // Deltas (r.x) are applied to whatever the row holds, exactly once per writer: skipped when the writer's ledger
    // entry for the key already covers the version (a retry after an unknown outcome, a WAL replay), when a later
    // delete's tombstone covers it, or when the row's last whole value (base_version) is younger. The ledger entry
    // is written in the same statement, so it commits with the delta or not at all. ON CONFLICT finds a row another
    // instance inserts meanwhile; the delta rides in the proposed row's last_delta to reach the update.
    this.writeSql = `
      WITH rows AS (
        SELECT r.k, r.n, r.v -> 0 AS value, r.d, r.x, coalesce(r.o, $2) AS origin
        FROM jsonb_to_recordset($1::jsonb) AS r(k text, n int8, v jsonb, d boolean, x jsonb, o text)
      ), upserted AS (
        INSERT INTO ${this.entriesTable} AS e ("key", "value", "version", "base_version", "last_delta", "updated_at")
        SELECT rows.k, rows.value, rows.n, rows.n, NULL, now() FROM rows
        WHERE rows.d IS NOT TRUE AND rows.x IS NULL
          AND NOT EXISTS (SELECT 1 FROM ${tombstonesTable} t WHERE t."key" = rows.k AND t."version" >= rows.n)
        ON CONFLICT ("key") DO UPDATE
          SET "value" = excluded."value", "version" = excluded."version", "base_version" = excluded."version",
              "last_delta" = NULL, "updated_at" = excluded."updated_at"
          WHERE e."version" < excluded."version"
        RETURNING e."key"
      ), deleted AS (
        DELETE FROM ${this.entriesTable} AS e
        USING rows
        WHERE rows.d AND e."key" = rows.k AND e."version" < rows.n
        RETURNING 1
      ), tombstoned AS (
        INSERT INTO ${tombstonesTable} AS t ("key", "version", "deleted_at")
        SELECT rows.k, rows.n, now() FROM rows
        WHERE rows.d AND NOT EXISTS (SELECT 1 FROM ${this.entriesTable} e WHERE e."key" = rows.k AND e."version" > rows.n)
        ON CONFLICT ("key") DO UPDATE SET "version" = excluded."version", "deleted_at" = excluded."deleted_at"
          WHERE t."version" < excluded."version"
        RETURNING t."key"
      ), revived AS (
        DELETE FROM ${tombstonesTable} AS t
        USING upserted
        WHERE t."key" = upserted."key"
        RETURNING 1
      ), fresh AS (
        SELECT rows.k, rows.n, rows.x, rows.origin,
               coalesce((SELECT t."version" FROM ${tombstonesTable} t WHERE t."key" = rows.k), 0) AS dead
        FROM rows
        WHERE rows.x IS NOT NULL
          AND NOT EXISTS (
            SELECT 1 FROM ${ledgerTable} l WHERE l."origin" = rows.origin AND l."key" = rows.k AND l."version" >= rows.n)
      ), applied AS (
        INSERT INTO ${this.entriesTable} AS e ("key", "value", "version", "base_version", "last_delta", "updated_at")
        SELECT fresh.k, ${applyDelta}(fresh.k, NULL, fresh.x), fresh.n, fresh.dead, fresh.x, now() FROM fresh
        WHERE fresh.dead < fresh.n
        ON CONFLICT ("key") DO UPDATE
          SET "value" = ${applyDelta}(e."key", e."value", excluded."last_delta"),
              "version" = greatest(e."version", excluded."version"), "last_delta" = excluded."last_delta",
              "updated_at" = excluded."updated_at"
          WHERE e."base_version" < excluded."version"
        RETURNING 1
      ), ledgered AS (
        INSERT INTO ${ledgerTable} AS l ("origin", "key", "version", "applied_at")
        SELECT fresh.origin, fresh.k, fresh.n, now() FROM fresh
        ON CONFLICT ("origin", "key") DO UPDATE SET "version" = excluded."version", "applied_at" = excluded."applied_at"
          WHERE l."version" < excluded."version"
        RETURNING 1
      )
      SELECT coalesce(array_agg(rows.k), '{}') AS skipped, (SELECT count(*) FROM deleted)::int AS deleted,
             (SELECT count(*) FROM revived)::int AS revived, (SELECT count(*) FROM applied)::int AS applied,
             (SELECT count(*) FROM ledgered)::int AS ledgered
      FROM rows
      WHERE rows.x IS NULL AND rows.k NOT IN (SELECT "key" FROM upserted UNION ALL SELECT "key" FROM tombstoned)`;
    this.loadSql = `SELECT "value"::text AS json, "version"::text AS version FROM ${this.entriesTable} WHERE "key" = $1`;
    // Plain SQL with the schema spelled out, not a repository: the tables of a named instance live in a schema
    // of their own, which the entity metadata of an application's DataSource does not know.
    this.deadLettersTable = `${prefix}"write_back_dead_letters"`;
  }

  /** Opens a DataSource of the module's own from `options.url`. */
  static async connect(options: ResolvedWriteBackOptions, retry?: ConnectRetry): Promise<DataSource> {
    const extra = (options.connectionOptions?.extra ?? {}) as Record<string, unknown>;
    const dataSource = new DataSource({
      applicationName: 'nestjs-write-back',
      ...options.connectionOptions,
      type: 'postgres',
      url: options.url,
      schema: options.schema,
      entities: [...WRITE_BACK_ENTITIES, ...(options.entities ?? [])],
      migrations: [...WRITE_BACK_MIGRATIONS],
      migrationsTableName: WRITE_BACK_MIGRATIONS_TABLE,
      synchronize: false,
      migrationsRun: false,
      poolSize: options.poolSize,
      extra: {
        statement_timeout: options.statementTimeoutMs || undefined,
        // A connection attempt into a silent network gives up as soon as a batch would.
        connectionTimeoutMillis: Math.min(10_000, batchDeadline(options.statementTimeoutMs) || 10_000),
        ...extra,
      },
    });
    return initializeWithRetry(dataSource, options.url!, retry);
  }

  /**
   * Runs the module's migrations. On a DataSource the application owns, on a short-lived clone of its options
   * (so the app's own migration list is untouched). Replicas starting together serialize on an advisory lock.
   */
  static async migrate(dataSource: DataSource, ownsDataSource: boolean, schema?: string): Promise<void> {
    const appSchema = (dataSource.options as { schema?: string }).schema;
    const target = ownsDataSource && schema === appSchema
      ? dataSource
      : await new DataSource({
          ...(dataSource.options as PostgresDataSourceOptions),
          schema,
          entities: [...WRITE_BACK_ENTITIES],
          migrations: [...WRITE_BACK_MIGRATIONS],
          migrationsTableName: WRITE_BACK_MIGRATIONS_TABLE,
          subscribers: [],
          synchronize: false,
          migrationsRun: false,
          dropSchema: false,
          poolSize: 1,
        }).initialize();
    const runner = target.createQueryRunner();
    try {
      await runner.connect();
      await runner.query(`SELECT pg_advisory_lock(hashtext('nestjs-write-back:migrations'))`);
      try {
        if (schema) await runner.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
        // On the locked connection itself: a pool of one must not wait for a second connection.
        const executor = new MigrationExecutor(target, runner);
        executor.transaction = 'each';
        await executor.executePendingMigrations();
      } finally {
        await runner.query(`SELECT pg_advisory_unlock(hashtext('nestjs-write-back:migrations'))`);
      }
    } finally {
      await runner.release();
      if (target !== dataSource) await target.destroy();
    }
  }

  /** Registers the flush statement and loader of an entity of `WriteBackModule.forFeature`. */
  registerEntity(writer: EntityWriter): void {
    const found = this.entityWriters.get(writer.table.name);
    if (found !== undefined && found.table.metadata.target !== writer.table.metadata.target) {
      throw new Error(`Two entities named ${writer.table.name} are written behind by one instance`);
    }
    this.entityWriters.set(writer.table.name, writer);
  }

  entityWriter(key: string): EntityWriter {
    const { entity } = parseEntityKey(key);
    const writer = this.entityWriters.get(entity);
    if (writer === undefined) throw new Error(`Entity ${entity} is not registered with WriteBackModule.forFeature on this instance`);
    return writer;
  }

  /**
   * Writes one batch (upserts and deletes) in one guarded statement, or with entity rows one statement per kind
   * (key-value entries, each entity's table) in one transaction. Returns the keys the version guard skipped because
   * Postgres already holds a newer version (or a newer delete) of them.
   */
  async writeBatch(items: readonly FlushItem[]): Promise<string[]> {
    if (this.entityWriters.size === 0) return this.run([{ sql: this.writeSql, params: [batchDocument(items), this.origin] }]);
    const plain: FlushItem[] = [];
    const byEntity = new Map<EntityWriter, FlushItem[]>();
    for (const item of items) {
      if (!isEntityKey(item.key)) {
        plain.push(item);
        continue;
      }
      const writer = this.entityWriter(item.key);
      const group = byEntity.get(writer);
      if (group === undefined) byEntity.set(writer, [item]);
      else group.push(item);
    }
    const statements: Statement[] = [];
    if (plain.length > 0) statements.push({ sql: this.writeSql, params: [batchDocument(plain), this.origin] });
    for (const [writer, group] of byEntity) {
      // Entity deltas have their own ledger origin: a key-value key may read like an entity's stored key.
      statements.push({
        sql: await writer.sql((sql, params) => this.dataSource.query(sql, params)),
        params: [writer.document(group), `${this.origin}:entities`],
        skipped: (keys) => writer.skipped(keys),
      });
    }
    return this.run(statements);
  }

  /** Runs the statements of one batch: one alone, several in one transaction; under the batch deadline if any. */
  private async run(statements: readonly Statement[]): Promise<string[]> {
    const collect = (results: { skipped: string[] }[][]) =>
      results.flatMap((rows, i) => {
        const keys = skippedKeys(rows);
        return statements[i].skipped ? statements[i].skipped!(keys) : keys;
      });
    if (this.batchDeadlineMs === 0 && statements.length === 1) {
      return collect([await this.dataSource.query(statements[0].sql, statements[0].params)]);
    }
    const runner = this.dataSource.createQueryRunner();
    const client = (await runner.connect()) as { connection?: { stream?: { destroy(error?: Error): void } } };
    let expired: Error | undefined;
    const work = async () => {
      if (statements.length === 1) return [await runner.query(statements[0].sql, statements[0].params)];
      await runner.startTransaction();
      try {
        const results = [];
        for (const statement of statements) results.push(await runner.query(statement.sql, statement.params));
        await runner.commitTransaction();
        return results;
      } catch (error) {
        if (runner.isTransactionActive && expired === undefined) await runner.rollbackTransaction().catch(() => undefined);
        throw error;
      }
    };
    try {
      if (this.batchDeadlineMs === 0) return collect(await work());
      return collect(
        await withTimeout(work(), this.batchDeadlineMs, () => {
          expired = Object.assign(new Error(`batch write got no answer within ${this.batchDeadlineMs} ms; connection discarded`), {
            code: 'ETIMEDOUT',
          });
          return expired;
        }),
      );
    } finally {
      if (expired !== undefined) {
        // The pool must not hand this connection out again: close its socket and release it as broken.
        client.connection?.stream?.destroy();
        await (runner as unknown as { releasePostgresConnection(error: Error): Promise<void> }).releasePostgresConnection(expired);
      } else {
        await runner.release();
      }
    }
  }

  /**
   * The stored JSON text and version of `key`, or undefined. A read is idempotent, so one that fails because its
   * pooled connection turned out to be dead (cut by a restart, a failover or a proxy: the pool drops it) is tried
   * again on another, up to LOAD_ATTEMPTS times; a failure to connect at all is not retried.
   */
  async load(key: string): Promise<StoredRow | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        if (isEntityKey(key)) return await this.entityWriter(key).load((sql, params) => this.dataSource.query(sql, params), key);
        const rows: { json: string; version: string }[] = await this.dataSource.query(this.loadSql, [key]);
        return rows.length === 0 ? undefined : { json: rows[0].json, version: Number(rows[0].version) };
      } catch (error) {
        if (attempt >= LOAD_ATTEMPTS || !isLostConnection(error)) throw error;
      }
    }
  }

  async insertDeadLetter(item: FlushItem, failure: DeadLetterFailure): Promise<void> {
    // The value is passed as JSON text and cast in SQL, so it is stored exactly as serialized at `set`.
    await this.dataSource.query(
      `INSERT INTO ${this.deadLettersTable}
         ("key", "value", "version", "operation", "error_code", "error_message", "attempts", "first_failed_at", "last_failed_at", "entity")
       VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [
        isEntityKey(item.key) ? storedEntityKey(item.key) : item.key,
        item.delta !== undefined ? deltaText(item.delta) : item.json,
        String(item.version),
        item.delta !== undefined ? 'delta' : item.json === null ? 'delete' : 'upsert',
        failure.code ?? null,
        failure.message,
        failure.attempts,
        failure.firstFailedAt,
        failure.lastFailedAt,
        isEntityKey(item.key) ? parseEntityKey(item.key).entity : null,
      ],
    );
  }

  async listDeadLetters(options: { limit?: number; afterId?: string; key?: string } = {}): Promise<WriteBackDeadLetter[]> {
    const rows: DeadLetterRow[] = await this.dataSource.query(
      `SELECT ${DEAD_LETTER_COLUMNS} FROM ${this.deadLettersTable}
       WHERE ($1::bigint IS NULL OR "id" > $1::bigint) AND ($2::text IS NULL OR "key" = $2)
       ORDER BY "id" LIMIT $3`,
      [options.afterId ?? null, options.key ?? null, options.limit ?? 100],
    );
    return rows.map(toDeadLetter);
  }

  async getDeadLetter(id: string): Promise<WriteBackDeadLetter | undefined> {
    const rows: DeadLetterRow[] = await this.dataSource.query(
      `SELECT ${DEAD_LETTER_COLUMNS} FROM ${this.deadLettersTable} WHERE "id" = $1`,
      [id],
    );
    return rows.length === 0 ? undefined : toDeadLetter(rows[0]);
  }

  /** Returns false if there was no such row. */
  async deleteDeadLetter(id: string): Promise<boolean> {
    // Wrapped in a SELECT: TypeORM answers a bare DELETE with [rows, rowCount] rather than the rows.
    const rows: { n: number }[] = await this.dataSource.query(
      `WITH gone AS (DELETE FROM ${this.deadLettersTable} WHERE "id" = $1 RETURNING 1) SELECT count(*)::int AS n FROM gone`,
      [id],
    );
    return rows[0].n > 0;
  }

  async countDeadLetters(): Promise<number> {
    const rows: { count: number }[] = await this.dataSource.query(`SELECT count(*)::int AS count FROM ${this.deadLettersTable}`);
    return rows[0].count;
  }
}

function skippedKeys(rows: { skipped: string[] }[]): string[] {
  return rows[0]?.skipped ?? [];
}

/** The client-side deadline of a batch: the server's statement_timeout plus room for its answer to arrive. */
export function batchDeadline(statementTimeoutMs: number): number {
  if (statementTimeoutMs === 0) return 0;
  return statementTimeoutMs + Math.min(5000, Math.max(1000, Math.round(statementTimeoutMs / 2)));
}

/**
 * `[{"k":key,"n":version,"v":[value]} | {"k":key,"n":version,"d":true} | {"k":key,"n":version,"x":delta,"o"?:origin}, ...]`
 * with the value texts pasted in.
 */
export function batchDocument(items: readonly FlushItem[]): string {
  let document = '[';
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (i > 0) document += ',';
    if (item.delta !== undefined) {
      const origin = item.origin === undefined ? '' : `,"o":${JSON.stringify(item.origin)}`;
      document += `{"k":${JSON.stringify(item.key)},"n":${item.version},"x":${deltaText(item.delta)}${origin}}`;
    } else {
      document +=
        item.json === null
          ? `{"k":${JSON.stringify(item.key)},"n":${item.version},"d":true}`
          : `{"k":${JSON.stringify(item.key)},"n":${item.version},"v":[${item.json}]}`;
    }
  }
  return `${document}]`;
}

const DEAD_LETTER_COLUMNS =
  '"id"::text AS id, "key", "value", "version"::text AS version, "operation", "error_code", "error_message", ' +
  '"attempts", "first_failed_at", "last_failed_at", "entity"';

interface DeadLetterRow {
  id: string;
  key: string;
  value: unknown;
  version: string;
  operation: WriteBackOperation;
  error_code: string | null;
  error_message: string;
  attempts: number;
  first_failed_at: Date;
  last_failed_at: Date;
  entity: string | null;
}

interface Statement {
  sql: string;
  params: unknown[];
  /** Maps the statement's skipped keys back to dirty-set keys. */
  skipped?: (keys: string[]) => string[];
}

function toDeadLetter(row: DeadLetterRow): WriteBackDeadLetter {
  return {
    id: row.id,
    key: row.key,
    entity: row.entity,
    value: row.value,
    version: Number(row.version),
    operation: row.operation,
    errorCode: row.error_code,
    errorMessage: row.error_message,
    attempts: row.attempts,
    firstFailedAt: row.first_failed_at,
    lastFailedAt: row.last_failed_at,
  };
}

/** Attempts of a `load` whose connection was lost (see `load`). */
const LOAD_ATTEMPTS = 3;
