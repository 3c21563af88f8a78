import { createHash, randomBytes } from 'node:crypto';
import { DataSource, MigrationExecutor } from 'typeorm';
import { deltaText } from '../model/delta.js';
import type { PostgresDataSourceOptions } from 'typeorm/driver/postgres/PostgresDataSourceOptions.js';
import type { PostgresDriver } from 'typeorm/driver/postgres/PostgresDriver.js';
import type { DeadLetterFailure, FlushItem, FlushSink, StoredRow } from '../model/types.js';
import { isLostConnection } from './error-classifier.js';
import { withTimeout } from '../with-timeout.js';
import { dollarQuote, localStatementTimeout } from './session-free-sql.js';
import type { ResolvedWriteBackOptions } from '../write-back.options.js';
import { WRITE_BACK_ENTITIES, WRITE_BACK_MIGRATIONS, WRITE_BACK_MIGRATIONS_TABLE } from './index.js';
import type { WriteBackOperation } from './write-back-dead-letter.entity.js';
import { initializeWithRetry, type ConnectRetry } from './connect-retry.js';
import { isEntityKey, parseEntityKey, storedEntityKey } from '../model/entity-key.js';
import type { EntityWriter } from '../entities/entity-writer.js';
import { WriteBackDuplicateEntityError, WriteBackEntityNotRegisteredError } from '../write-back.errors.js';

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

/**
 * All SQL of the module. A batch travels as one jsonb parameter whatever its size (Postgres allows 65,535
 * parameters per statement); the JSON text serialized at `set` is sent as is.
 */
export class WriteBackStore implements FlushSink {
  private readonly entriesTable: string;
  private readonly deadLettersTable: string;
  /** Quoted ledger table name, for the entity statements. */
  readonly ledgerTable: string;
  private readonly entityWriters = new Map<string, EntityWriter>();
  /**
   * The batch statement around its one input, the batch document: `writeSqlHead + literal + writeSqlBody`, then
   * the clock and notify parts ({@link replicationSql}) and `writeSqlResult`.
   */
  private readonly writeSqlHead: string;
  private readonly writeSqlBody: string;
  private readonly writeSqlResult: string;
  private readonly clockTable: string;
  private readonly tombstonesTable: string;
  private readonly sequenceName: string;
  /** The NOTIFY channel of these tables (every instance on them LISTENs to it). */
  readonly channel: string;
  /** Set by {@link startClock}: what the batch statement records and announces. */
  private replication: { slotBase: number; origin: string; notify: boolean } | undefined;
  private batchCounter = 0;
  /** Connections checked out of the pool by {@link runAll} now. */
  private readonly leases = new Set<Lease>();
  /**
   * Told the highest version Postgres held for keys the version guard skipped in a batch (the hybrid clock
   * observes it).
   */
  onObserved: ((version: number) => void) | undefined;
  private readonly loadSql: string;
  /** Put in front of every statement, in the same query string: see {@link localStatementTimeout}. */
  private readonly timeoutSql: string;
  private readonly batchDeadlineMs: number;

  /**
   * No session state: each statement carries its own `SET LOCAL statement_timeout` in the same round trip (one
   * simple-protocol query string, one implicit transaction), values travel inline as dollar-quoted literals and no
   * statement is prepared by name, so the module runs unchanged behind PgBouncer in transaction mode.
   *
   * @param statementTimeoutMs the server-side limit of each statement (0: none, whatever the session says). A batch
   *   write also gets a client-side deadline from it ({@link batchDeadline}): `statement_timeout` cannot end a
   *   statement the server never received (a silent network partition), so past that deadline the connection is
   *   destroyed, the batch fails as a transient error and is retried on a new one.
   */
  constructor(
    readonly dataSource: DataSource,
    readonly schema: string | undefined,
    statementTimeoutMs = 0,
    /** Whose deltas this store writes: the key of the instance's rows in the delta ledger (see `fresh` below). */
    readonly deltaOrigin: string = randomBytes(16).toString('hex'),
  ) {
    this.timeoutSql = localStatementTimeout(statementTimeoutMs);
    this.batchDeadlineMs = batchDeadline(statementTimeoutMs);
    const prefix = schema ? `"${schema}".` : '';
    this.entriesTable = `${prefix}"write_back_entries"`;
    this.deadLettersTable = `${prefix}"write_back_dead_letters"`;
    const tombstonesTable = `${prefix}"write_back_tombstones"`;
    this.clockTable = `${prefix}"write_back_clock"`;
    this.tombstonesTable = tombstonesTable;
    this.sequenceName = `${prefix}"write_back_instance_ids"`;
    this.channel = notifyChannel(schema);
    // One round trip and one bind parameter per batch: the rows travel as one JSON array into which each value's
    // JSON text (serialized once at set) is pasted as is, so Node does no per-row escaping; Postgres parses it.
    // Every write is guarded by version so the table never goes backwards and replays are idempotent: an upsert
    // applies only above the row's version and above the key's tombstone (the version of its last committed
    // delete); a delete removes an older row and records its tombstone. A batch never holds one key twice (that
    // would be error 21000). The value is wrapped in a one-element array: `-> 0` keeps a JSON null a jsonb null.
    // The statement returns the keys the guard skipped: memory holds an older version than Postgres for those.
    // The batch document comes first in the text and pg_stat_activity shows only its start: the comment says
    // which table the statement writes to.
    const ledgerTable = `${prefix}"write_back_delta_ledger"`;
    this.ledgerTable = ledgerTable;
    const applyDelta = `${prefix}"write_back_apply_delta"`;
    this.writeSqlHead = `/* write-back batch into ${this.entriesTable} */
      WITH rows AS (
        SELECT r.k, r.n, r.v -> 0 AS value, r.d, r.x, coalesce(r.o, ${dollarQuote(this.deltaOrigin)}) AS origin
        FROM jsonb_to_recordset(`;
    // In key order (byte order, the same everywhere): batches of several instances that share keys then lock their
    // rows in the same order, instead of deadlocking (40P01) over them.
    this.writeSqlBody = `::jsonb) AS r(k text, n int8, v jsonb, d boolean, x jsonb, o text)
        ORDER BY r.k COLLATE "C"
      ), upserted AS (
        INSERT INTO ${this.entriesTable} AS e ("key", "value", "version", "base_version", "last_delta", "updated_at")
        SELECT rows.k, rows.value, rows.n, rows.n, NULL, now() FROM rows
        WHERE rows.d IS NOT TRUE AND rows.x IS NULL
          AND NOT EXISTS (SELECT 1 FROM ${tombstonesTable} t WHERE t."key" = rows.k AND t."version" >= rows.n)
        ON CONFLICT ("key") DO UPDATE
          SET "value" = excluded."value", "version" = excluded."version", "base_version" = excluded."version",
              "last_delta" = NULL, "updated_at" = excluded."updated_at"
          WHERE e."version" < excluded."version"
        RETURNING e."key", e."version"
      ), deleted AS (
        DELETE FROM ${this.entriesTable} AS e
        USING rows
        WHERE rows.d AND e."key" = rows.k AND e."version" < rows.n
        RETURNING 1
      ), claimed AS (
        -- A delete also inserts a placeholder row of its key (removed again by the fix-up statement before commit,
        -- so nobody ever sees it): an upsert of the key by another instance that is in progress makes this wait for
        -- its commit, and one that starts later waits for ours. Upsert and delete of one key thus never overlap.
        INSERT INTO ${this.entriesTable} AS e ("key", "value", "version", "updated_at")
        SELECT rows.k, 'null'::jsonb, rows.n, now() FROM rows WHERE rows.d
        ON CONFLICT ("key") DO NOTHING
        RETURNING 1
      ), tombstoned AS (
        INSERT INTO ${tombstonesTable} AS t ("key", "version", "deleted_at")
        SELECT rows.k, rows.n, now() FROM rows
        WHERE rows.d AND NOT EXISTS (SELECT 1 FROM ${this.entriesTable} e WHERE e."key" = rows.k AND e."version" > rows.n)
        ON CONFLICT ("key") DO UPDATE SET "version" = excluded."version", "deleted_at" = excluded."deleted_at"
          WHERE t."version" < excluded."version"
        RETURNING t."key", t."version"
      ), revived AS (
        -- Only an older tombstone: one that another instance raised meanwhile (this DELETE waits for it and rechecks
        -- the row) must stay, for the fix-up statement to remove this upsert's row.
        DELETE FROM ${tombstonesTable} AS t
        USING upserted
        WHERE t."key" = upserted."key" AND t."version" < upserted."version"
        RETURNING 1
      ), fresh AS (
        -- Deltas (r.x) are applied to whatever the row holds, exactly once per writer: skipped when the writer's
        -- ledger row for the key already covers the version (a retry after an unknown outcome, a WAL replay), when a
        -- later delete's tombstone covers it, or when the row's last whole value (base_version) is younger. The
        -- ledger row is written in the same statement, so it commits with the delta or not at all.
        SELECT rows.k, rows.n, rows.x, rows.origin,
               coalesce((SELECT t."version" FROM ${tombstonesTable} t WHERE t."key" = rows.k), 0) AS dead
        FROM rows
        WHERE rows.x IS NOT NULL
          AND NOT EXISTS (
            SELECT 1 FROM ${ledgerTable} l WHERE l."origin" = rows.origin AND l."key" = rows.k AND l."version" >= rows.n)
      ), applied AS (
        -- ON CONFLICT finds a row another instance inserts meanwhile; the delta rides in the proposed row's
        -- last_delta to reach the update.
        INSERT INTO ${this.entriesTable} AS e ("key", "value", "version", "base_version", "last_delta", "updated_at")
        SELECT fresh.k, ${applyDelta}(fresh.k, NULL, fresh.x), fresh.n, fresh.dead, fresh.x, now() FROM fresh
        WHERE fresh.dead < fresh.n
        -- In key order, as the rows: instances counting the same keys lock them in one order (no 40P01).
        ORDER BY fresh.k COLLATE "C"
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
      )`;
    // Skipped keys, and the highest version Postgres holds for them (read in the statement's snapshot: what the
    // guard compared against), which the instance's clock then observes.
    this.writeSqlResult = `
      SELECT coalesce(array_agg(rows.k), '{}') AS skipped, (SELECT count(*) FROM deleted)::int AS deleted,
             (SELECT count(*) FROM revived)::int AS revived, (SELECT count(*) FROM applied)::int AS applied,
             (SELECT count(*) FROM ledgered)::int AS ledgered,
             -- A CTE that only SELECTs runs only when read: this runs the notifications.
             (SELECT count(*) FROM notified)::int AS notified,
             max(greatest((SELECT e."version" FROM ${this.entriesTable} e WHERE e."key" = rows.k),
                          (SELECT t."version" FROM ${tombstonesTable} t WHERE t."key" = rows.k)))::text AS high
      FROM rows
      WHERE rows.x IS NULL AND rows.k NOT IN (SELECT "key" FROM upserted UNION ALL SELECT "key" FROM tombstoned)`;
    this.loadSql = `SELECT "value"::text AS json, "version"::text AS version FROM ${this.entriesTable} WHERE "key" = `;
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
      // No `statement_timeout` start-up parameter (PgBouncer refuses it): each statement sets its own, see the store.
      extra: {
        // A connection attempt into a silent network gives up as soon as a batch would.
        connectionTimeoutMillis: Math.min(10_000, batchDeadline(options.statementTimeoutMs) || 10_000),
        ...extra,
      },
    });
    return initializeWithRetry(dataSource, options.url!, retry);
  }

  /**
   * Runs the module's migrations. On a DataSource the application owns, on a short-lived clone of its options
   * (so the app's own migration list is untouched). Replicas starting together serialize on a transaction advisory
   * lock, so this works through a transaction pooler (PgBouncer) as well as on a direct connection.
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
      // One transaction for the lock and every pending migration, the migrations table included: a transaction
      // advisory lock and SET LOCAL end with it, so nothing depends on the session, and through PgBouncer in
      // transaction mode the whole run stays on one server connection. Instances starting together wait here in
      // turn; the next one then finds nothing pending. No statement timeout: a migration (or the wait for another
      // instance's) may take long, and a leftover session setting must not cut it short.
      await runner.startTransaction();
      try {
        await runner.query('SET LOCAL statement_timeout = 0');
        await runner.query(`SELECT pg_advisory_xact_lock(hashtext('nestjs-write-back:migrations'))`);
        if (schema) await runner.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
        const executor = new MigrationExecutor(target, runner);
        // 'all' on a runner already in a transaction: the executor neither begins nor commits, this code does.
        executor.transaction = 'all';
        await executor.executePendingMigrations();
        await runner.commitTransaction();
      } catch (error) {
        if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => undefined);
        throw error;
      }
    } finally {
      await runner.release();
      if (target !== dataSource) await target.destroy();
    }
  }

  /**
   * Writes one batch (upserts and deletes) in one guarded statement. Returns the keys the version guard skipped
   * because Postgres already holds a newer version (or a newer delete) of them.
   */
  async writeBatch(items: readonly FlushItem[]): Promise<string[]> {
    if (this.entityWriters.size === 0) {
      // Statements: the timeout, the batch, the fix-up (if any): the batch's result is the second.
      const rows = (await this.runAll<{ skipped: string[]; high: string | null }>(this.batchSql(items), this.batchDeadlineMs))[1];
      return this.batchResult(rows);
    }
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
    // One query string, so one implicit transaction: the key-value batch (and its fix-up), then one statement per
    // entity, each with its inputs inline like every statement of the store.
    let sql = (plain.length > 0 ? this.batchSql(plain) : this.timeoutSql).replace(/;\s*$/, '');
    const fixUp = plain.length > 0 && this.fixUpSql(plain) !== '' ? 1 : 0;
    const writers = [...byEntity];
    // Where each entity's result naming its skipped rows is, among the statements (-1: none).
    const generalAt: number[] = [];
    let next = plain.length > 0 ? 2 + fixUp : 1;
    for (const [writer, group] of writers) {
      // Entity deltas have their own ledger origin: a key-value key may read like an entity's stored key.
      const { sql: statements, general } = await writer.statements(
        (text, params) => this.dataSource.query(text, params),
        group,
        `${this.deltaOrigin}:entities`,
      );
      generalAt.push(general < 0 ? -1 : next + general);
      next += statements.length;
      sql += `;${statements.join(';')}`;
    }
    // The entity rows are announced like key-value entries (in the same transaction: heard when it commits).
    const entityItems = writers.flatMap(([, group]) => group);
    if (this.replication?.notify === true && entityItems.length > 0) sql += `;${this.notifySql(entityItems)}`;
    const results = await this.runAll<{ skipped: string[]; high: string | null }>(sql, this.batchDeadlineMs);
    const skipped = plain.length > 0 ? this.batchResult(results[1]) : [];
    writers.forEach(([writer], i) => {
      if (generalAt[i] >= 0) skipped.push(...writer.skipped(skippedKeys(results[generalAt[i]])));
    });
    return skipped;
  }

  /** The key-value batch as a query string: the timeout, the batch statement, the fix-up statement (if any). */
  private batchSql(items: readonly FlushItem[]): string {
    return (
      `${this.timeoutSql}${this.writeSqlHead}${dollarQuote(batchDocument(items))}${this.writeSqlBody}` +
      `${this.replicationSql(items)}${this.writeSqlResult};${this.fixUpSql(items)}`
    );
  }

  private batchResult(rows: { skipped: string[]; high: string | null }[]): string[] {
    const high = rows[0]?.high;
    if (high != null) this.onObserved?.(Number(high));
    return skippedKeys(rows);
  }

  /** Registers the flush statement and loader of an entity of `WriteBackModule.forFeature`. */
  registerEntity(writer: EntityWriter): void {
    const found = this.entityWriters.get(writer.table.name);
    if (found !== undefined && found.table.metadata.target !== writer.table.metadata.target) {
      throw new WriteBackDuplicateEntityError(writer.table.name);
    }
    this.entityWriters.set(writer.table.name, writer);
  }

  entityWriter(key: string): EntityWriter {
    const { entity } = parseEntityKey(key);
    const writer = this.entityWriters.get(entity);
    if (writer === undefined) throw new WriteBackEntityNotRegisteredError(entity);
    return writer;
  }

  /**
   * The CTEs that record the batch's highest version in this instance's slots of `write_back_clock` (read at the
   * next start of any instance) and, unless `singleInstance`, announce every key and version of the batch with
   * NOTIFY. NOTIFY is transactional: listeners hear it exactly when the batch commits. Payload:
   * `<origin> <ms> [key,version,...]` (origin: the sending instance, so it skips its own cheaply; ms: Postgres's
   * clock at notify, for the lag). Keys are grouped into several notifications so each stays under Postgres's
   * 8000-byte payload limit; a key too long to fit is announced as `*` (drop every clean copy).
   */
  private replicationSql(items: readonly FlushItem[]): string {
    const replication = this.replication;
    if (replication === undefined) return NO_NOTIFY;
    // A few slots per instance, used in turn: parallel flush connections of one instance do not wait on one row.
    const slot = replication.slotBase + (this.batchCounter++ % CLOCK_SLOTS_PER_INSTANCE);
    let sql = `, clocked AS (
        INSERT INTO ${this.clockTable} AS c ("slot", "version")
        SELECT ${slot}, max(rows.n) FROM rows HAVING count(*) > 0
        ON CONFLICT ("slot") DO UPDATE SET "version" = excluded."version" WHERE c."version" < excluded."version"
        RETURNING 1
      )`;
    if (!replication.notify) return sql + NO_NOTIFY;
    // The payloads are built here, from the batch: Postgres only stamps them (its clock, for the lag) and sends
    // them. They name every key of the batch, the ones the guard skipped too: a listener drops only copies older
    // than the announced version, which are older than the newer row that made the guard skip as well.
    const payloads = notifyPayloads(items, replication.origin.length + 16);
    const values = payloads.map((payload) => `(${dollarQuote(payload)})`).join(', ');
    return `${sql}, notified AS (
        SELECT pg_notify('${this.channel}', '${replication.origin} ' ||
          (extract(epoch FROM clock_timestamp()) * 1000)::int8 || ' ' || p.payload)
        FROM (VALUES ${values}) AS p(payload)
      )`;
  }

  /** A statement of its own that announces `items` (see {@link replicationSql}). */
  private notifySql(items: readonly FlushItem[]): string {
    const origin = this.replication!.origin;
    const values = notifyPayloads(items, origin.length + 16).map((payload) => `(${dollarQuote(payload)})`).join(', ');
    return `SELECT count(pg_notify('${this.channel}', '${origin} ' ||
        (extract(epoch FROM clock_timestamp()) * 1000)::int8 || ' ' || p.payload)) FROM (VALUES ${values}) AS p(payload)`;
  }

  /**
   * Upsert against delete across instances. The batch statement reads tombstones in its snapshot, so an upsert
   * could not see a delete of its key committed by another instance while it waited for that delete's placeholder
   * row (see `claimed`), and a delete could not see an upsert committed while it waited: either may then have
   * left a row at or below the key's tombstone. This second statement of the same transaction takes a new snapshot
   * (read committed), which sees whichever of the two committed first, and removes such rows, the placeholders
   * included: whatever the interleaving, the higher version wins. For every key only with other instances (one
   * instance never flushes one key on two connections at once); with `singleInstance` for the deletes alone, whose
   * placeholders it removes.
   */
  private fixUpSql(items: readonly FlushItem[]): string {
    // With other instances every key of the batch is checked. A single instance only needs it for its deletes: each
    // inserted a placeholder row (see `claimed`) that only this statement removes.
    const others = this.replication !== undefined && this.replication.notify;
    const checked = others ? items : items.filter((item) => item.json === null && item.delta === undefined);
    if (checked.length === 0) return '';
    let keys = '[';
    for (let i = 0; i < checked.length; i++) keys += (i > 0 ? ',' : '') + JSON.stringify(checked[i].key);
    keys += ']';
    return `
      DELETE FROM ${this.entriesTable} AS e USING ${this.tombstonesTable} AS t
      WHERE t."key" IN (SELECT jsonb_array_elements_text(${dollarQuote(keys)}::jsonb))
        AND e."key" = t."key" AND e."version" <= t."version"`;
  }

  /**
   * Takes this instance's place in the hybrid clock: its id (`instanceId`, else the next of the cycling sequence
   * `write_back_instance_ids`) and the highest version any instance committed (from `write_back_clock`: a few rows
   * per instance, no scan of the entries). From here on every batch records its highest version there and, unless
   * `notify` is false, announces its changes.
   */
  async startClock(instanceId: number | undefined, notify: boolean): Promise<{ instanceId: number; highWater: number; origin: string }> {
    const rows = await this.run<{ id: number; high: string | null }>(
      `${this.timeoutSql}SELECT ${instanceId === undefined ? `nextval('${this.sequenceName}')::int` : integer(instanceId)} AS id, ` +
        `(SELECT max("version") FROM ${this.clockTable})::text AS high`,
    );
    const id = Number(rows[0].id);
    const origin = randomBytes(4).toString('hex');
    this.replication = { slotBase: id * CLOCK_SLOTS_PER_INSTANCE, origin, notify };
    return { instanceId: id, highWater: rows[0].high === null ? 0 : Number(rows[0].high), origin };
  }

  /**
   * Runs a simple-protocol query string on a pooled connection and returns the rows of its last statement. With a
   * `deadlineMs` (0: none), a query with no answer by then fails with ETIMEDOUT and its connection is discarded.
   */
  private async run<Row>(sql: string, deadlineMs = 0): Promise<Row[]> {
    return (await this.runAll<Row>(sql, deadlineMs)).at(-1)!;
  }

  /**
   * Like {@link run}, with the rows of every statement of the query string, in order. Through the public API of the
   * `pg` pool TypeORM built (`PostgresDriver.master`): `connect()`, then `release(error)` for a connection that must
   * not be handed out again, which the pool then closes (a query still in the air: its socket is destroyed).
   */
  private async runAll<Row>(sql: string, deadlineMs = 0): Promise<Row[][]> {
    const lease: Lease = { client: await this.pool().connect(), released: false };
    const client = lease.client;
    // The client is out of the pool, whose idle error handler is off: a socket error while it is held (a restart,
    // a proxy cutting it) must not crash the process. The query fails with it as well.
    let broken: unknown;
    const onError = (error: unknown) => (broken ??= error);
    client.on('error', onError);
    this.leases.add(lease);
    try {
      const answer = client.query(sql);
      const result =
        deadlineMs === 0
          ? await answer
          : await withTimeout(answer, deadlineMs, () => {
              const expired = Object.assign(new Error(`batch write got no answer within ${deadlineMs} ms; connection discarded`), {
                code: 'ETIMEDOUT',
              });
              broken = expired;
              return expired;
            });
      return (Array.isArray(result) ? result : [result]).map((part) => part.rows as Row[]);
    } catch (error) {
      // A FATAL (57P01 after pg_terminate_backend, a restart) can arrive before the socket closes: released as
      // healthy, the connection would fail the retry too.
      if (broken === undefined && isLostConnection(error)) broken = error;
      throw error;
    } finally {
      this.leases.delete(lease);
      client.removeListener('error', onError);
      if (!lease.released) {
        lease.released = true;
        client.release(broken === undefined ? undefined : broken instanceof Error ? broken : new Error(String(broken)));
      }
    }
  }

  /**
   * Closes the connections statements of this store still hold (a batch stuck behind a lock when the shutdown drain
   * gave up): the pool's `end()` waits for every connection to come back, so the DataSource could not close until
   * their statements timed out. Their statements fail as lost connections.
   */
  abandonConnections(): void {
    for (const lease of this.leases) {
      lease.released = true;
      lease.client.release(new Error('write-back store closing: statement abandoned'));
    }
    this.leases.clear();
  }

  /** The `pg` pool of the DataSource: TypeORM's documented `PostgresDriver.master`. */
  private pool(): PgPool {
    return (this.dataSource.driver as PostgresDriver).master as PgPool;
  }

  /**
   * The stored JSON text and version of `key`, or undefined. A read is idempotent, so one that fails because its
   * pooled connection turned out to be dead (cut by a restart, a failover or a proxy: the pool drops it) is tried
   * again on another, up to LOAD_ATTEMPTS times; a failure to connect at all is not retried.
   */
  async load(key: string): Promise<StoredRow | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        if (isEntityKey(key)) return await this.entityWriter(key).load((query, params) => this.dataSource.query(query, params), key);
        const rows = await this.run<{ json: string; version: string }>(`${this.timeoutSql}${this.loadSql}${dollarQuote(key)}`);
        return rows.length === 0 ? undefined : { json: rows[0].json, version: Number(rows[0].version) };
      } catch (error) {
        if (attempt >= LOAD_ATTEMPTS || !isLostConnection(error)) throw error;
      }
    }
  }

  async insertDeadLetter(item: FlushItem, failure: DeadLetterFailure): Promise<void> {
    // The value is passed as JSON text and cast in SQL, so it is stored exactly as serialized at `set`.
    const text = (value: string | null) => (value === null ? 'NULL' : dollarQuote(value));
    await this.run(
      `${this.timeoutSql}INSERT INTO ${this.deadLettersTable} ("key", "value", "version", "operation", "error_code", ` +
        `"error_message", "attempts", "first_failed_at", "last_failed_at", "entity") VALUES (` +
        `${text(isEntityKey(item.key) ? storedEntityKey(item.key) : item.key)}, ` +
        `${text(item.delta !== undefined ? deltaText(item.delta) : item.json)}::jsonb, ${integer(item.version)}, ` +
        `'${item.delta !== undefined ? 'delta' : item.json === null ? 'delete' : 'upsert'}', ` +
        `${text(failure.code ?? null)}, ${text(failure.message)}, ${integer(failure.attempts)}, ` +
        `'${failure.firstFailedAt.toISOString()}'::timestamptz, '${failure.lastFailedAt.toISOString()}'::timestamptz, ` +
        `${text(isEntityKey(item.key) ? parseEntityKey(item.key).entity : null)})`,
    );
  }

  async listDeadLetters(options: { limit?: number; afterId?: string; key?: string } = {}): Promise<WriteBackDeadLetter[]> {
    const conditions: string[] = [];
    if (options.afterId !== undefined) conditions.push(`"id" > ${dollarQuote(options.afterId)}::bigint`);
    if (options.key !== undefined) conditions.push(`"key" = ${dollarQuote(options.key)}`);
    const rows = await this.run<DeadLetterRow>(
      `${this.timeoutSql}SELECT ${DEAD_LETTER_COLUMNS} FROM ${this.deadLettersTable}` +
        `${conditions.length > 0 ? ` WHERE ${conditions.join(' AND ')}` : ''} ORDER BY "id" LIMIT ${integer(options.limit ?? 100)}`,
    );
    return rows.map(toDeadLetter);
  }

  async getDeadLetter(id: string): Promise<WriteBackDeadLetter | undefined> {
    const rows = await this.run<DeadLetterRow>(
      `${this.timeoutSql}SELECT ${DEAD_LETTER_COLUMNS} FROM ${this.deadLettersTable} WHERE "id" = ${dollarQuote(id)}::bigint`,
    );
    return rows.length === 0 ? undefined : toDeadLetter(rows[0]);
  }

  /** Returns false if there was no such row. */
  async deleteDeadLetter(id: string): Promise<boolean> {
    const rows = await this.run<{ n: number }>(
      `${this.timeoutSql}WITH gone AS (DELETE FROM ${this.deadLettersTable} WHERE "id" = ${dollarQuote(id)}::bigint RETURNING 1) ` +
        'SELECT count(*)::int AS n FROM gone',
    );
    return rows[0].n > 0;
  }

  async countDeadLetters(): Promise<number> {
    const rows = await this.run<{ count: string }>(`${this.timeoutSql}SELECT count(*) AS count FROM ${this.deadLettersTable}`);
    return Number(rows[0].count);
  }
}

/** A safe integer as SQL text (versions and counts are never anything else). */
function integer(value: number): string {
  if (!Number.isSafeInteger(value)) throw new RangeError(`expected a safe integer, got ${value}`);
  return String(value);
}

/** A connection {@link WriteBackStore.runAll} holds, released exactly once (pg-pool throws on a second release). */
interface Lease {
  client: PgClient;
  released: boolean;
}

/** The part of a `pg` Pool (and its clients) the store uses. */
interface PgPool {
  connect(): Promise<PgClient>;
}

interface PgClient {
  query(sql: string): Promise<{ rows: unknown[] } | { rows: unknown[] }[]>;
  on(event: 'error', listener: (error: unknown) => void): void;
  removeListener(event: 'error', listener: (error: unknown) => void): void;
  /** Back to the pool; with an error, the pool closes the connection instead of handing it out again. */
  release(error?: Error): void;
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

/** The `notified` CTE when nothing is announced. */
const NO_NOTIFY = `, notified AS (SELECT 1 WHERE false)`;

/** Rows of `write_back_clock` per instance id (see {@link WriteBackStore.replicationSql}). */
const CLOCK_SLOTS_PER_INSTANCE = 8;

/** Most bytes of one notification payload: Postgres's limit is 8000 (less than that, to be safe). */
const NOTIFY_PAYLOAD_BYTES = 7900;

/**
 * The notification bodies of a batch: `["key",version,...]` groups that, behind a header of `headerBytes`, stay
 * within NOTIFY_PAYLOAD_BYTES (Postgres's limit is 8000), and `*` if a key is too long to be named in one (listeners
 * then drop every clean copy).
 */
export function notifyPayloads(items: readonly FlushItem[], headerBytes: number): string[] {
  const limit = NOTIFY_PAYLOAD_BYTES - headerBytes - 2;
  const payloads: string[] = [];
  let body = '';
  let bytes = 0;
  let tooLong = false;
  for (const item of items) {
    // A delta, or an entity row, is announced with its version negated: it changed the row without necessarily
    // raising a version above a copy another instance holds, so listeners drop every copy of the key.
    const negated = item.delta !== undefined || isEntityKey(item.key);
    const entry = `${JSON.stringify(item.key)},${negated ? '-' : ''}${item.version}`;
    const entryBytes = Buffer.byteLength(entry);
    if (entryBytes > limit) {
      tooLong = true;
      continue;
    }
    if (bytes > 0 && bytes + 1 + entryBytes > limit) {
      payloads.push(`[${body}]`);
      body = '';
      bytes = 0;
    }
    body = bytes === 0 ? entry : `${body},${entry}`;
    bytes += (bytes === 0 ? 0 : 1) + entryBytes;
  }
  if (bytes > 0) payloads.push(`[${body}]`);
  if (tooLong) payloads.push('*');
  return payloads;
}

/** `write_back:<schema>` (one channel per set of tables), hashed when longer than an identifier may be. */
export function notifyChannel(schema: string | undefined): string {
  const channel = schema ? `write_back:${schema}` : 'write_back';
  if (channel.length <= 63) return channel;
  return `write_back:${createHash('sha1').update(schema!).digest('hex').slice(0, 40)}`;
}

/** Attempts of a `load` whose connection was lost (see `load`). */
const LOAD_ATTEMPTS = 3;
