import type { ObjectLiteral } from 'typeorm';
import { deltaText } from '../model/delta.js';
import { entityKeyOfStored, parseEntityKey } from '../model/entity-key.js';
import type { FlushItem, StoredRow } from '../model/types.js';
import { inline } from '../store/session-free-sql.js';
import { quote, type EntityColumn, type EntityTable } from './entity-table.js';

interface CatalogColumn {
  name: string;
  def: string | null;
  generated: string;
  identity: string;
}

type Query = (sql: string, params?: unknown[]) => Promise<any>;

/**
 * The flush statement of one entity's table and the row loader. One statement per batch: the rows travel as one
 * jsonb parameter and `jsonb_populate_record(NULL::table, doc)` turns each document into the table's row type, so
 * Postgres converts every column to its own type (text, integer, bigint, numeric, boolean, timestamptz, jsonb, uuid,
 * enum, arrays). In one statement:
 * - whole rows (`save`): an UPDATE of the columns the document names (the others keep their values), then an
 *   INSERT of the rows that did not exist, with the table's defaults for the columns not named;
 * - deletes;
 * - row deltas (`update`, `increment`): named columns set, increments added to whatever the row holds. A delta
 *   with increments is guarded by the delta ledger (origin, key, version) written in the same statement, so it
 *   applies exactly once; one that only sets columns is idempotent and skips the ledger (a retry after an unknown
 *   outcome sets the same values again). An update of an absent row does nothing, as SQL UPDATE does.
 * With a `versionColumn` (bigint) the module writes its version there: saves and deletes apply only above the row's
 * version, a delta's column values only above it (its increments always apply: they commute). TypeORM's
 * `@VersionColumn` (an int) is incremented by each write, as TypeORM's own saves do.
 * A batch never holds one primary key twice: the dirty set holds one entry per key.
 */
export class EntityWriter {
  private plan: Promise<Plan> | undefined;
  private readonly loadSql: string;
  /** `"column":` of each primary key column, for the documents of the lean statements. */
  private readonly primaryFields: string[];

  constructor(
    readonly table: EntityTable,
    private readonly ledgerTable: string,
  ) {
    this.loadSql =
      `SELECT t.* FROM ${table.table} AS t, jsonb_populate_record(NULL::${table.table}, $1::jsonb) AS p WHERE ` +
      table.primary.map((c) => `t.${quote(c.name)} = p.${quote(c.name)}`).join(' AND ');
    this.primaryFields = table.primary.map((c) => `${JSON.stringify(c.name)}:`);
  }

  /**
   * The statements of one batch of this entity's rows, with their inputs inline (`origin`: the ledger origin of
   * increments), and the index among them of the one whose result names the skipped rows (-1: none can be).
   * Rows that only set columns go, grouped by the columns they name, into plain `UPDATE ... FROM
   * jsonb_populate_recordset(...)` statements (the shape an app would write by hand); the rest (saves, deletes,
   * increments, and column sets too few to group) into the general statement. Each row is in exactly one
   * statement, so the order of the statements changes nothing.
   */
  async statements(query: Query, items: readonly FlushItem[], origin: string): Promise<{ sql: string[]; general: number }> {
    this.plan ??= this.build(query).catch((error) => {
      this.plan = undefined;
      throw error;
    });
    const plan = await this.plan;
    // Rows that only set columns, by the (sorted) columns they name.
    const groups = new Map<string, { columns: string[]; items: FlushItem[] }>();
    const rest: FlushItem[] = [];
    for (const item of items) {
      const set = item.delta?.inc === undefined ? item.delta?.set : undefined;
      if (set === undefined) {
        rest.push(item);
        continue;
      }
      const columns = Object.keys(set).sort();
      const signature = columns.join('\u0000');
      const group = groups.get(signature);
      if (group === undefined) groups.set(signature, { columns, items: [item] });
      else group.items.push(item);
    }
    const sql: string[] = [];
    for (const { columns, items: group } of groups.values()) {
      const lean = group.length >= LEAN_GROUP_MIN ? plan.lean(columns) : undefined;
      if (lean === undefined) rest.push(...group);
      else sql.push(inline(lean, [this.leanDocument(group)]));
    }
    if (rest.length === 0) return { sql, general: -1 };
    sql.push(inline(plan.general, [this.document(rest), origin]));
    return { sql, general: sql.length - 1 };
  }

  /** `[{primary key columns..., set columns..., version column?: version}, ...]` for a lean statement. */
  private leanDocument(items: readonly FlushItem[]): string {
    const version = this.table.version === undefined ? undefined : `${JSON.stringify(this.table.version.name)}:`;
    let document = '[';
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      const delta = item.delta!;
      const set = delta.setText ?? JSON.stringify(delta.set);
      // The set's own fields, then the module's version last: a later duplicate field wins in jsonb.
      document += `${i > 0 ? ',' : ''}{${this.primaryText(item.key)},${set.slice(1, -1)}${version === undefined ? '' : `,${version}${item.version}`}}`;
    }
    return `${document}]`;
  }

  /** `"id":1` (or every column of a composite key) from the JSON array of a dirty-set key. */
  private primaryText(key: string): string {
    const values = parseEntityKey(key).primaryKey;
    if (this.primaryFields.length === 1) return `${this.primaryFields[0]}${values.slice(1, -1)}`;
    const parsed = JSON.parse(values) as unknown[];
    return this.primaryFields.map((field, i) => `${field}${JSON.stringify(parsed[i])}`).join(',');
  }

  /**
   * `[{"k":storedKey,"n":version,"p":[primary key values],"v":row | "d":true | "x":delta,"o"?:origin}, ...]`: the
   * key's own JSON text of the primary key is pasted in, and the statement names its columns.
   */
  document(items: readonly FlushItem[]): string {
    const prefix = `${this.table.name}:`;
    let document = '[';
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      const { primaryKey } = parseEntityKey(item.key);
      const head = `{"k":${JSON.stringify(prefix + primaryKey)},"n":${item.version},"p":${primaryKey}`;
      if (i > 0) document += ',';
      if (item.delta !== undefined) {
        const origin = item.origin === undefined ? '' : `,"o":${JSON.stringify(item.origin)}`;
        document += `${head},"x":${deltaText(item.delta)}${origin}}`;
      } else {
        document += item.json === null ? `${head},"d":true}` : `${head},"v":${item.json}}`;
      }
    }
    return `${document}]`;
  }

  /** Internal keys of the statement's `skipped` stored keys. */
  skipped(stored: readonly string[]): string[] {
    return stored.map((key) => entityKeyOfStored(this.table.name, key));
  }

  /** The stored row of `key` as a document (and the version column's value, else 0), or undefined. */
  async load(query: Query, key: string): Promise<StoredRow | undefined> {
    const values = JSON.parse(parseEntityKey(key).primaryKey) as unknown[];
    const rows: Record<string, unknown>[] = await query(this.loadSql, [JSON.stringify(this.table.primaryDocument(values))]);
    if (rows.length === 0) return undefined;
    const doc = this.table.documentOfRow(rows[0]);
    const version = this.table.version === undefined ? 0 : Number(rows[0][this.table.version.name] ?? 0);
    return { json: JSON.stringify(doc), version };
  }

  private async build(query: Query): Promise<Plan> {
    const catalog: CatalogColumn[] = await query(
      `SELECT a.attname AS name, pg_get_expr(d.adbin, d.adrelid) AS def, a.attgenerated::text AS generated,
              a.attidentity::text AS identity
       FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`,
      [this.table.table],
    );
    return buildPlan(this.table, this.ledgerTable, new Map(catalog.map((c) => [c.name, c])));
  }
}

/** Fewer rows naming the same columns than this go into the general statement (one statement less to plan). */
const LEAN_GROUP_MIN = 16;
/** Distinct column sets whose lean statement is kept built. */
const LEAN_CACHE_MAX = 64;

interface Plan {
  /** Every kind of row: `$1` the document, `$2` the ledger origin. */
  general: string;
  /** The lean UPDATE of rows setting exactly `columns` (database names, sorted); undefined when none is settable. */
  lean(columns: readonly string[]): string | undefined;
}

function buildPlan(table: EntityTable<ObjectLiteral>, ledgerTable: string, catalog: Map<string, CatalogColumn>): Plan {
  const general = buildStatement(table, ledgerTable, catalog);
  const settable = new Set(settableColumns(table, catalog).map((c) => c.name));
  const built = new Map<string, string | undefined>();
  return {
    general,
    lean(columns) {
      const signature = columns.join('\u0000');
      if (built.has(signature)) return built.get(signature);
      const sql = buildLeanStatement(table, columns.filter((c) => settable.has(c)), columns);
      if (built.size >= LEAN_CACHE_MAX) built.delete(built.keys().next().value!);
      built.set(signature, sql);
      return sql;
    },
  };
}

/**
 * Columns the flush writes from documents: not generated by Postgres, not the version columns (set apart), and
 * for updates not the primary key nor an identity column Postgres always generates.
 */
function writableColumns(table: EntityTable<ObjectLiteral>, catalog: Map<string, CatalogColumn>): EntityColumn[] {
  return table.columns.filter((c) => {
    const found = catalog.get(c.name);
    return found !== undefined && found.generated === '' && c !== table.version && c !== table.counter;
  });
}

function settableColumns(table: EntityTable<ObjectLiteral>, catalog: Map<string, CatalogColumn>): EntityColumn[] {
  return writableColumns(table, catalog).filter((c) => !c.primary && catalog.get(c.name)!.identity !== 'a');
}

/**
 * The general statement's effect on rows that only set `named` columns, as one plain UPDATE: named settable
 * columns take the document's values (only above the row's version when the module keeps one), an
 * `@UpdateDateColumn` not named takes now(), the version becomes the greater one, TypeORM's `@VersionColumn`
 * counts the write. Absent rows are not created.
 */
function buildLeanStatement(table: EntityTable<ObjectLiteral>, set: readonly string[], named: readonly string[]): string | undefined {
  if (set.length === 0) return undefined;
  const q = quote;
  const version = table.version;
  const assignments = set.map((name) =>
    version === undefined ? `${q(name)} = r.${q(name)}` : `${q(name)} = CASE WHEN t.${q(version.name)} < r.${q(version.name)} THEN r.${q(name)} ELSE t.${q(name)} END`,
  );
  if (table.updateDate !== undefined && !named.includes(table.updateDate.name)) assignments.push(`${q(table.updateDate.name)} = now()`);
  if (version !== undefined) assignments.push(`${q(version.name)} = greatest(t.${q(version.name)}, r.${q(version.name)})`);
  if (table.counter !== undefined) assignments.push(`${q(table.counter.name)} = coalesce(t.${q(table.counter.name)}, 0) + 1`);
  return (
    `UPDATE ${table.table} AS t SET ${assignments.join(', ')} ` +
    `FROM jsonb_populate_recordset(NULL::${table.table}, $1::jsonb) AS r ` +
    `WHERE ${table.primary.map((c) => `t.${q(c.name)} = r.${q(c.name)}`).join(' AND ')}`
  );
}

function buildStatement(table: EntityTable<ObjectLiteral>, ledgerTable: string, catalog: Map<string, CatalogColumn>): string {
  const T = table.table;
  const q = quote;
  const version = table.version;
  const counter = table.counter;
  const updateDate = table.updateDate;
  const writable = writableColumns(table, catalog);
  const alwaysIdentity = writable.some((c) => catalog.get(c.name)!.identity === 'a');
  const settable = settableColumns(table, catalog);
  const pkMatch = (row: string, record: string) => table.primary.map((c) => `${row}.${q(c.name)} = (${record}).${q(c.name)}`).join(' AND ');
  const lit = (name: string) => `'${name.replace(/'/g, "''")}'`;
  const defaultOf = (c: EntityColumn): string => {
    const found = catalog.get(c.name)!;
    if (found.identity !== '') return `nextval(pg_get_serial_sequence(${lit(T)}, ${lit(c.name)}))`;
    return found.def ?? 'NULL';
  };
  const named = (doc: string, c: EntityColumn) => `${doc} ? ${lit(c.name)}`;
  const updateDateFallback = (c: EntityColumn, otherwise: string) => (c === updateDate ? 'now()' : otherwise);

  const saveSet = settable.map(
    (c) => `${q(c.name)} = CASE WHEN ${named('saves.v', c)} THEN (saves.s).${q(c.name)} ELSE ${updateDateFallback(c, `t.${q(c.name)}`)} END`,
  );
  // TypeORM's @VersionColumn counts writes, as TypeORM's own saves do.
  const bump = counter ? [`${q(counter.name)} = coalesce(t.${q(counter.name)}, 0) + 1`] : [];
  if (version) saveSet.push(`${q(version.name)} = saves.n`);
  saveSet.push(...bump);
  const insertColumns = [...writable.map((c) => q(c.name)), ...(version ? [q(version.name)] : []), ...(counter ? [q(counter.name)] : [])];
  const insertValues = [
    ...writable.map((c) => `CASE WHEN ${named('saves.v', c)} THEN (saves.s).${q(c.name)} ELSE ${defaultOf(c)} END`),
    ...(version ? ['saves.n'] : []),
    ...(counter ? ['1'] : []),
  ];
  const conflictSet = [
    ...settable.map((c) => `${q(c.name)} = excluded.${q(c.name)}`),
    ...(version ? [`${q(version.name)} = excluded.${q(version.name)}`] : []),
    ...bump,
  ];
  const guard = (n: string) => (version ? ` AND t.${q(version.name)} < ${n}` : '');
  const deltaSet = settable.map((c) => {
    const set = `CASE WHEN ${named("fresh.x -> 'c'", c)}${guard('fresh.n')} THEN (fresh.c).${q(c.name)} ELSE ${updateDateFallback(c, `t.${q(c.name)}`)} END`;
    if (!c.incrementable) return `${q(c.name)} = ${set}`;
    return `${q(c.name)} = CASE WHEN ${named("fresh.x -> 'i'", c)} THEN coalesce(${set}, 0) + (fresh.i).${q(c.name)} ELSE ${set} END`;
  });
  if (version) deltaSet.push(`${q(version.name)} = greatest(t.${q(version.name)}, fresh.n)`);
  deltaSet.push(...bump);
  const pkColumns = table.primary.map((c) => q(c.name)).join(', ');

  return `
    WITH rows AS (
      SELECT r.k, r.n, r.v, r.d, r.x, coalesce(r.o, $2) AS origin,
             jsonb_populate_record(NULL::${T}, jsonb_build_object(${table.primary.map((c, i) => `${lit(c.name)}, r.p -> ${i}`).join(', ')})) AS p
      FROM jsonb_to_recordset($1::jsonb) AS r(k text, n int8, p jsonb, v jsonb, d boolean, x jsonb, o text)
    ), saves AS (
      SELECT rows.k, rows.n, rows.v, jsonb_populate_record(NULL::${T}, rows.v) AS s FROM rows WHERE rows.v IS NOT NULL
    ), saved AS (
      UPDATE ${T} AS t SET ${saveSet.length > 0 ? saveSet.join(', ') : `${q(table.primary[0].name)} = t.${q(table.primary[0].name)}`}
      FROM saves WHERE ${pkMatch('t', 'saves.s')}${guard('saves.n')}
      RETURNING saves.k
    ), inserted AS (
      INSERT INTO ${T} AS t (${insertColumns.join(', ')})${alwaysIdentity ? ' OVERRIDING SYSTEM VALUE' : ''}
      SELECT ${insertValues.join(', ')} FROM saves
      WHERE NOT EXISTS (SELECT 1 FROM ${T} AS e WHERE ${pkMatch('e', 'saves.s')})
      ON CONFLICT (${pkColumns}) DO ${conflictSet.length > 0 ? `UPDATE SET ${conflictSet.join(', ')}${version ? ` WHERE t.${q(version.name)} < excluded.${q(version.name)}` : ''}` : 'NOTHING'}
      RETURNING ${table.primary.map((c) => `t.${q(c.name)}`).join(', ')}
    ), deleted AS (
      DELETE FROM ${T} AS t USING rows
      WHERE rows.d AND ${pkMatch('t', 'rows.p')}${guard('rows.n')}
      RETURNING 1
    ), fresh AS (
      SELECT rows.k, rows.n, rows.x, rows.origin, rows.p,
             CASE WHEN rows.x ? 'c' THEN jsonb_populate_record(NULL::${T}, rows.x -> 'c') END AS c,
             CASE WHEN rows.x ? 'i' THEN jsonb_populate_record(NULL::${T}, rows.x -> 'i') END AS i
      FROM rows
      WHERE rows.x IS NOT NULL
        AND (NOT rows.x ? 'i' OR NOT EXISTS (
          SELECT 1 FROM ${ledgerTable} l WHERE l."origin" = rows.origin AND l."key" = rows.k AND l."version" >= rows.n))
    ), changed AS (
      UPDATE ${T} AS t SET ${deltaSet.length > 0 ? deltaSet.join(', ') : `${q(table.primary[0].name)} = t.${q(table.primary[0].name)}`}
      FROM fresh WHERE ${pkMatch('t', 'fresh.p')}
      RETURNING 1
    ), ledgered AS (
      INSERT INTO ${ledgerTable} AS l ("origin", "key", "version", "applied_at")
      SELECT fresh.origin, fresh.k, fresh.n, now() FROM fresh WHERE fresh.x ? 'i'
      ON CONFLICT ("origin", "key") DO UPDATE SET "version" = excluded."version", "applied_at" = excluded."applied_at"
        WHERE l."version" < excluded."version"
      RETURNING 1
    )
    SELECT coalesce(
             (SELECT array_agg(saves.k) FROM saves
              WHERE saves.k NOT IN (SELECT k FROM saved)
                AND NOT EXISTS (SELECT 1 FROM inserted WHERE ${pkMatch('inserted', 'saves.s')})),
             '{}') AS skipped,
           (SELECT count(*) FROM deleted)::int AS deleted, (SELECT count(*) FROM changed)::int AS changed,
           (SELECT count(*) FROM ledgered)::int AS ledgered`;
}
