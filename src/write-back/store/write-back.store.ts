import { DataSource, MigrationExecutor, type Repository } from 'typeorm';
import type { PostgresDataSourceOptions } from 'typeorm/driver/postgres/PostgresDataSourceOptions.js';
import type { FlushItem } from '../cache/dirty-set.js';
import { WriteBackConfigError } from '../write-back.errors.js';
import { isLostConnection } from '../flush/error-classifier.js';
import { withTimeout } from '../with-timeout.js';
import type { ResolvedWriteBackOptions } from '../write-back.options.js';
import { WRITE_BACK_ENTITIES, WRITE_BACK_MIGRATIONS, WRITE_BACK_MIGRATIONS_TABLE } from './index.js';
import { WriteBackDeadLetterEntity, type WriteBackOperation } from './write-back-dead-letter.entity.js';

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
  key: string;
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
  private readonly deadLetters: Repository<WriteBackDeadLetterEntity>;

  /**
   * @param batchDeadlineMs client-side limit of one batch write (0: none). `statement_timeout` is enforced by the
   *   server, so it cannot end a statement the server never received (a silent network partition): past this
   *   deadline the connection is destroyed, the batch fails as a transient error and is retried on a new one.
   */
  constructor(
    readonly dataSource: DataSource,
    readonly schema: string | undefined,
    private readonly batchDeadlineMs = 0,
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
    this.writeSql = `
      WITH rows AS (
        SELECT r.k, r.n, r.v -> 0 AS value, r.d FROM jsonb_to_recordset($1::jsonb) AS r(k text, n int8, v jsonb, d boolean)
      ), upserted AS (
        INSERT INTO ${this.entriesTable} AS e ("key", "value", "version", "updated_at")
        SELECT rows.k, rows.value, rows.n, now() FROM rows
        WHERE rows.d IS NOT TRUE
          AND NOT EXISTS (SELECT 1 FROM ${tombstonesTable} t WHERE t."key" = rows.k AND t."version" >= rows.n)
        ON CONFLICT ("key") DO UPDATE
          SET "value" = excluded."value", "version" = excluded."version", "updated_at" = excluded."updated_at"
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
      )
      SELECT coalesce(array_agg(rows.k), '{}') AS skipped, (SELECT count(*) FROM deleted)::int AS deleted,
             (SELECT count(*) FROM revived)::int AS revived
      FROM rows
      WHERE rows.k NOT IN (SELECT "key" FROM upserted UNION ALL SELECT "key" FROM tombstoned)`;
    this.loadSql = `SELECT "value"::text AS json, "version"::text AS version FROM ${this.entriesTable} WHERE "key" = $1`;
    if (!dataSource.hasMetadata(WriteBackDeadLetterEntity)) {
      throw new WriteBackConfigError(
        'dataSource',
        'its entities do not include the write-back entities; add ...WRITE_BACK_ENTITIES to its "entities" option',
      );
    }
    this.deadLetters = dataSource.getRepository(WriteBackDeadLetterEntity);
  }

  /** Opens a DataSource of the module's own from `options.url`. */
  static async connect(options: ResolvedWriteBackOptions): Promise<DataSource> {
    const extra = (options.connectionOptions?.extra ?? {}) as Record<string, unknown>;
    const dataSource = new DataSource({
      applicationName: 'nestjs-write-back',
      ...options.connectionOptions,
      type: 'postgres',
      url: options.url,
      schema: options.schema,
      entities: [...WRITE_BACK_ENTITIES],
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
    return dataSource.initialize();
  }

  /**
   * Runs the module's migrations. On a DataSource the application owns, on a short-lived clone of its options
   * (so the app's own migration list is untouched). Replicas starting together serialize on an advisory lock.
   */
  static async migrate(dataSource: DataSource, ownsDataSource: boolean): Promise<void> {
    const target = ownsDataSource
      ? dataSource
      : await new DataSource({
          ...(dataSource.options as PostgresDataSourceOptions),
          entities: [...WRITE_BACK_ENTITIES],
          migrations: [...WRITE_BACK_MIGRATIONS],
          migrationsTableName: WRITE_BACK_MIGRATIONS_TABLE,
          subscribers: [],
          synchronize: false,
          migrationsRun: false,
          dropSchema: false,
          poolSize: 1,
        }).initialize();
    const schema = (target.options as { schema?: string }).schema;
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
      if (!ownsDataSource) await target.destroy();
    }
  }

  /**
   * Writes one batch (upserts and deletes) in one guarded statement. Returns the keys the version guard skipped
   * because Postgres already holds a newer version (or a newer delete) of them.
   */
  async writeBatch(items: readonly FlushItem[]): Promise<string[]> {
    const document = batchDocument(items);
    if (this.batchDeadlineMs === 0) return skippedKeys(await this.dataSource.query(this.writeSql, [document]));
    const runner = this.dataSource.createQueryRunner();
    const client = (await runner.connect()) as { connection?: { stream?: { destroy(error?: Error): void } } };
    let expired: Error | undefined;
    let lost: unknown;
    try {
      return skippedKeys(
        await withTimeout(runner.query(this.writeSql, [document]), this.batchDeadlineMs, () => {
          expired = Object.assign(new Error(`batch write got no answer within ${this.batchDeadlineMs} ms; connection discarded`), {
            code: 'ETIMEDOUT',
          });
          return expired;
        }),
      );
    } catch (error) {
      // A FATAL (57P01 after pg_terminate_backend, a restart) can arrive before the socket closes: released as
      // healthy, the connection would fail the retry too.
      if (expired === undefined && isLostConnection(error)) lost = error;
      throw error;
    } finally {
      if (expired !== undefined) {
        // The pool must not hand this connection out again: close its socket and release it as broken.
        client.connection?.stream?.destroy();
        await (runner as unknown as { releasePostgresConnection(error: Error): Promise<void> }).releasePostgresConnection(expired);
      } else if (lost !== undefined) {
        await (runner as unknown as { releasePostgresConnection(error: unknown): Promise<void> }).releasePostgresConnection(lost);
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
        const rows: { json: string; version: string }[] = await this.dataSource.query(this.loadSql, [key]);
        return rows.length === 0 ? undefined : { json: rows[0].json, version: Number(rows[0].version) };
      } catch (error) {
        if (attempt >= LOAD_ATTEMPTS || !isLostConnection(error)) throw error;
      }
    }
  }

  async insertDeadLetter(item: FlushItem, failure: DeadLetterFailure): Promise<void> {
    // The value is passed as JSON text and cast in SQL, so it is stored exactly as serialized at `set`.
    await this.deadLetters
      .createQueryBuilder()
      .insert()
      .values({
        key: item.key,
        value: item.json === null ? (null as unknown as undefined) : () => `CAST(:json AS jsonb)`,
        version: String(item.version),
        operation: item.json === null ? 'delete' : 'upsert',
        errorCode: failure.code ?? null,
        errorMessage: failure.message,
        attempts: failure.attempts,
        firstFailedAt: failure.firstFailedAt,
        lastFailedAt: failure.lastFailedAt,
      })
      .setParameter('json', item.json)
      .execute();
  }

  async listDeadLetters(options: { limit?: number; afterId?: string; key?: string } = {}): Promise<WriteBackDeadLetter[]> {
    const query = this.deadLetters.createQueryBuilder('d').orderBy('d.id', 'ASC').take(options.limit ?? 100);
    if (options.afterId !== undefined) query.andWhere('d.id > :afterId', { afterId: options.afterId });
    if (options.key !== undefined) query.andWhere('d.key = :key', { key: options.key });
    return (await query.getMany()).map(toDeadLetter);
  }

  async getDeadLetter(id: string): Promise<WriteBackDeadLetter | undefined> {
    const row = await this.deadLetters.findOneBy({ id });
    return row === null ? undefined : toDeadLetter(row);
  }

  /** Returns false if there was no such row. */
  async deleteDeadLetter(id: string): Promise<boolean> {
    const result = await this.deadLetters.delete({ id });
    return (result.affected ?? 0) > 0;
  }

  async countDeadLetters(): Promise<number> {
    return this.deadLetters.count();
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

/** `[{"k":key,"n":version,"v":[value]} | {"k":key,"n":version,"d":true}, ...]` with the value texts pasted in. */
export function batchDocument(items: readonly FlushItem[]): string {
  let document = '[';
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    if (i > 0) document += ',';
    document +=
      item.json === null
        ? `{"k":${JSON.stringify(item.key)},"n":${item.version},"d":true}`
        : `{"k":${JSON.stringify(item.key)},"n":${item.version},"v":[${item.json}]}`;
  }
  return `${document}]`;
}

function toDeadLetter(row: WriteBackDeadLetterEntity): WriteBackDeadLetter {
  return {
    id: String(row.id),
    key: row.key,
    value: row.value,
    version: Number(row.version),
    operation: row.operation,
    errorCode: row.errorCode,
    errorMessage: row.errorMessage,
    attempts: row.attempts,
    firstFailedAt: row.firstFailedAt,
    lastFailedAt: row.lastFailedAt,
  };
}

/** Attempts of a `load` whose connection was lost (see `load`). */
const LOAD_ATTEMPTS = 3;
