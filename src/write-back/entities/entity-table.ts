import type { DataSource, EntityMetadata, EntityTarget, ObjectLiteral } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata.js';
import { ApplyValueTransformers } from 'typeorm/util/ApplyValueTransformers.js';
import { entityKey } from '../model/entity-key.js';
import { WriteBackConfigError, WriteBackValidationError } from '../write-back.errors.js';

/** Postgres types the flush sends through `jsonb_populate_record` (also as arrays). */
const SENDABLE_TYPES = new Set([
  'text',
  'character varying',
  'character',
  'citext',
  'integer',
  'smallint',
  'bigint',
  'numeric',
  'real',
  'double precision',
  'boolean',
  'timestamp with time zone',
  'timestamp without time zone',
  'date',
  'time without time zone',
  'time with time zone',
  'interval',
  'uuid',
  'json',
  'jsonb',
  'enum',
  'inet',
  'cidr',
  'macaddr',
  'bytea',
]);
/** TypeORM types that normalize to a sendable one but store something the flush does not build (a joined string). */
const UNSENDABLE_DECLARED = new Set(['simple-array', 'simple-json']);
const INCREMENTABLE = new Set(['integer', 'smallint', 'bigint', 'numeric', 'real', 'double precision']);
/** TypeORM hands these to the app as strings (exact beyond 2^53). */
const DECIMAL_STRING = new Set(['bigint', 'numeric']);
const TIMESTAMP = new Set(['timestamp with time zone', 'timestamp without time zone']);

export interface EntityColumn {
  readonly metadata: ColumnMetadata;
  /** Database column name: the key of the column in a row document. */
  readonly name: string;
  readonly type: string;
  readonly primary: boolean;
  readonly incrementable: boolean;
}

/**
 * What the flush, the loader and a `WriteBackRepository` know of one entity, built once from TypeORM's metadata:
 * the table, its columns by database name, the primary key, the `@CreateDateColumn` / `@UpdateDateColumn` /
 * `@VersionColumn`. Rows travel as documents: a JSON object of column values by database column name, in the form
 * `jsonb_populate_record` reads (timestamps as ISO strings, bigint and numeric as decimal strings, jsonb as JSON).
 */
export class EntityTable<T extends ObjectLiteral = ObjectLiteral> {
  readonly name: string;
  /** `"schema"."table"`, quoted. */
  readonly table: string;
  readonly columns: readonly EntityColumn[];
  readonly primary: readonly EntityColumn[];
  readonly updateDate: EntityColumn | undefined;
  readonly createDate: EntityColumn | undefined;
  /**
   * The column holding the module's write versions (bigint, named by the `versionColumn` option): writes older than
   * the row's version are skipped. Undefined: no guard (see the README's "Entities" section for the rule).
   */
  readonly version: EntityColumn | undefined;
  /** TypeORM's `@VersionColumn` (int): incremented by every write the module makes, as TypeORM's own saves do. */
  readonly counter: EntityColumn | undefined;
  private readonly byProperty = new Map<string, EntityColumn>();
  /** Columns inside embedded entities: property paths are then not plain property names. */
  private readonly embedded: boolean;

  private constructor(
    readonly metadata: EntityMetadata,
    readonly dataSource: DataSource,
    versionColumn: string | undefined,
  ) {
    this.name = metadata.name;
    const schema = metadata.schema ?? (dataSource.options as { schema?: string }).schema;
    this.table = schema ? `${quote(schema)}.${quote(metadata.tableName)}` : quote(metadata.tableName);
    const columns: EntityColumn[] = [];
    for (const column of metadata.columns) {
      if (column.isVirtualProperty) continue;
      const type = String(dataSource.driver.normalizeType(column));
      columns.push({
        metadata: column,
        name: column.databaseName,
        type,
        primary: column.isPrimary,
        incrementable: INCREMENTABLE.has(type) && !column.isArray,
      });
    }
    this.columns = columns;
    this.primary = columns.filter((c) => c.primary);
    for (const column of columns) this.byProperty.set(column.metadata.propertyPath, column);
    this.embedded = columns.some((c) => c.metadata.embeddedMetadata !== undefined);
    this.updateDate = columns.find((c) => c.metadata.isUpdateDate);
    this.createDate = columns.find((c) => c.metadata.isCreateDate);
    this.counter = columns.find((c) => c.metadata.isVersion);
    this.version = versionColumn === undefined ? undefined : this.byProperty.get(versionColumn);
  }

  /**
   * Checks that `target` can be written behind and builds its table. Throws {@link WriteBackConfigError} naming the
   * entity and the fix: not in the DataSource, no primary key, relations, a column type the flush cannot send.
   */
  static of<T extends ObjectLiteral>(
    dataSource: DataSource,
    target: EntityTarget<T>,
    instance: string,
    versionColumn?: string,
  ): EntityTable<T> {
    const label = typeof target === 'function' ? target.name : String((target as { name?: string }).name ?? target);
    if (!dataSource.hasMetadata(target)) {
      throw new WriteBackConfigError(
        'forFeature',
        `entity ${label} is not in the DataSource of write-back instance "${instance}". Potential solutions: with the ` +
          '"dataSource" option, add it to the entities of that DataSource; with "url", list it in forRoot({ entities: [...] })',
      );
    }
    const metadata = dataSource.getMetadata(target);
    const problem = (what: string) => new WriteBackConfigError('forFeature', `entity ${metadata.name} ${what}`);
    if (metadata.primaryColumns.length === 0) throw problem('has no primary key; write-back rows are keyed by it');
    if (metadata.relations.length > 0) {
      throw problem(
        `has relations (${metadata.relations.map((r) => r.propertyName).join(', ')}); relations and their cascades are ` +
          'not written behind. Map the foreign key as a plain @Column (e.g. authorId) in the entity you write behind, ' +
          'or keep writing that entity with a TypeORM repository',
      );
    }
    if (metadata.inheritancePattern !== undefined || metadata.tableType !== 'regular') {
      throw problem('uses table inheritance or is not a regular table; only plain entity tables are written behind');
    }
    for (const column of metadata.columns) {
      if (column.isVirtualProperty) continue;
      const declared = typeof column.type === 'string' ? column.type : '';
      const type = String(dataSource.driver.normalizeType(column));
      if (UNSENDABLE_DECLARED.has(declared) || !SENDABLE_TYPES.has(type)) {
        throw problem(
          `has column "${column.propertyPath}" of type "${declared || type}", which the write-back flush cannot send; ` +
            `supported: ${[...SENDABLE_TYPES].join(', ')} (and arrays of them)`,
        );
      }
    }
    if (versionColumn !== undefined) {
      const column = metadata.columns.find((c) => c.propertyPath === versionColumn);
      const type = column === undefined ? undefined : String(dataSource.driver.normalizeType(column));
      if (column === undefined || type !== 'bigint' || column.isPrimary || column.isVersion) {
        throw problem(
          `: versionColumn "${versionColumn}" must name a bigint column that is not the primary key nor the ` +
            '@VersionColumn (TypeORM keeps that one an int counter; module versions are 64-bit clock values), ' +
            `e.g. @Column('bigint', { default: 0 }) ${versionColumn}!: string`,
        );
      }
    }
    return new EntityTable<T>(metadata, dataSource, versionColumn);
  }

  column(property: string): EntityColumn {
    const column = this.byProperty.get(property);
    if (column === undefined) throw new WriteBackValidationError(`Entity ${this.name} has no column "${property}".`);
    return column;
  }

  /**
   * The dirty-set key of a row from its primary key: a value for a single-column key, or an object with every
   * primary column (by property name). Values are normalized by column type, so `1` and `"1"` of a bigint key are
   * one row (a batch never holds one primary key twice).
   */
  keyOf(id: unknown): { key: string; values: unknown[] } {
    const values = this.primary.map((column) => {
      const raw =
        this.primary.length === 1 && (typeof id !== 'object' || id === null || id instanceof Date)
          ? id
          : id !== null && typeof id === 'object'
            ? column.metadata.getEntityValue(id as ObjectLiteral)
            : undefined;
      if (raw === undefined || raw === null) {
        throw new WriteBackValidationError(
          `Entity ${this.name}: primary key column "${column.metadata.propertyPath}" is missing; ` +
            (this.primary.length === 1 ? 'pass its value' : 'pass an object with every primary key column') +
            ' (a write-back row is keyed before Postgres sees it, so generated keys must be assigned by the app)',
        );
      }
      return this.keyValue(column, raw);
    });
    return { key: entityKey(this.name, values), values };
  }

  /** The primary key as a document (column name -> value) for the statement. */
  primaryDocument(values: readonly unknown[]): Record<string, unknown> {
    const doc: Record<string, unknown> = {};
    this.primary.forEach((column, i) => (doc[column.name] = values[i]));
    return doc;
  }

  /** The primary key values from a stored key's JSON array. */
  primaryObject(values: readonly unknown[]): Record<string, unknown> {
    const object: Record<string, unknown> = {};
    this.primary.forEach((column, i) => (object[column.metadata.propertyPath] = this.entityValue(column, values[i])));
    return object;
  }

  /** A row document from an entity (or a partial one): undefined properties are left out. */
  document(entity: ObjectLiteral, only?: 'partial'): Record<string, unknown> {
    const doc: Record<string, unknown> = {};
    if (only === 'partial' && !this.embedded) {
      // Only the properties the caller named (a partial names few of many columns).
      for (const property of Object.keys(entity)) {
        const column = this.byProperty.get(property);
        const value = entity[property];
        if (column === undefined || value === undefined) continue;
        if (column.primary) {
          throw new WriteBackValidationError(`Entity ${this.name}: update() cannot change primary key column "${property}".`);
        }
        doc[column.name] = this.documentValue(column, value);
      }
      return doc;
    }
    for (const column of this.columns) {
      const value = column.metadata.getEntityValue(entity);
      if (value === undefined) continue;
      if (only === 'partial' && column.primary) {
        throw new WriteBackValidationError(`Entity ${this.name}: update() cannot change primary key column "${column.metadata.propertyPath}".`);
      }
      doc[column.name] = this.documentValue(column, value);
    }
    return doc;
  }

  /** An entity instance from a row document, with TypeORM's types (Date for timestamps, strings for bigint). */
  entity(doc: Record<string, unknown>): T {
    const entity = this.metadata.create() as T;
    for (const column of this.columns) {
      if (!Object.hasOwn(doc, column.name)) continue;
      column.metadata.setEntityValue(entity, this.entityValue(column, doc[column.name]));
    }
    return entity;
  }

  /** A row document from a row as the pg driver returns it (hydrated the way TypeORM hydrates it). */
  documentOfRow(row: Record<string, unknown>): Record<string, unknown> {
    const doc: Record<string, unknown> = {};
    for (const column of this.columns) {
      const hydrated = this.dataSource.driver.prepareHydratedValue(row[column.name], column.metadata);
      doc[column.name] = this.documentValue(column, hydrated);
    }
    return doc;
  }

  private documentValue(column: EntityColumn, entityValue: unknown): unknown {
    let value = column.metadata.transformer
      ? ApplyValueTransformers.transformTo(column.metadata.transformer, entityValue)
      : entityValue;
    if (value === null || value === undefined) return null;
    if (column.metadata.isArray && Array.isArray(value)) return value.map((item) => this.scalar(column, item));
    return this.scalar(column, value);
  }

  private scalar(column: EntityColumn, value: unknown): unknown {
    if (typeof value === 'bigint') return value.toString();
    if (DECIMAL_STRING.has(column.type) && typeof value === 'number') return String(value);
    if (value instanceof Date) {
      if (Number.isNaN(value.getTime())) {
        throw new WriteBackValidationError(`Entity ${this.name}: column "${column.metadata.propertyPath}" holds an invalid Date.`);
      }
      // What JSON.stringify would write, once, so a document of scalars is its own snapshot.
      return column.type === 'date' ? value.toISOString().slice(0, 10) : value.toISOString();
    }
    return value;
  }

  private entityValue(column: EntityColumn, value: unknown): unknown {
    let result = value;
    if (result !== null && result !== undefined && TIMESTAMP.has(column.type)) {
      result = Array.isArray(result) ? result.map((item) => new Date(item as string)) : new Date(result as string);
    }
    return column.metadata.transformer ? ApplyValueTransformers.transformFrom(column.metadata.transformer, result) : result;
  }

  private keyValue(column: EntityColumn, raw: unknown): unknown {
    const value = this.documentValue(column, raw);
    if (column.type === 'integer' || column.type === 'smallint') {
      const number = typeof value === 'string' ? Number(value) : value;
      if (!Number.isSafeInteger(number)) {
        throw new WriteBackValidationError(`Entity ${this.name}: primary key "${column.metadata.propertyPath}" must be an integer, got ${String(raw)}.`);
      }
      return number;
    }
    if (column.type === 'bigint') {
      const text = String(value);
      if (!/^-?\d+$/.test(text)) {
        throw new WriteBackValidationError(`Entity ${this.name}: primary key "${column.metadata.propertyPath}" must be an integer, got ${text}.`);
      }
      return BigInt(text).toString();
    }
    if (column.type === 'uuid' && typeof value === 'string') return value.toLowerCase();
    if (value instanceof Date) return value.toISOString();
    return value;
  }
}

export function quote(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}
