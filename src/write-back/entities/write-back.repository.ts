import type { ObjectLiteral } from 'typeorm';
import { storedEntityKey } from '../model/entity-key.js';
import { incrementColumnDelta, setColumnsDelta } from '../model/delta.js';
import { serializeValue } from '../cache/serialize.js';
import { WriteBackValidationError } from '../write-back.errors.js';
import type { WriteBackService, WriteBackSetOptions } from '../write-back.service.js';
import type { EntityTable } from './entity-table.js';

/**
 * A primary key: the value of a single-column key, or an object holding every primary key column (by property
 * name) — an entity itself will do.
 */
export type WriteBackEntityId<T> = string | number | bigint | Date | Partial<T>;

/** The properties of `T` that hold numbers or the decimal strings TypeORM uses for bigint and numeric. */
export type WriteBackNumericColumn<T> = {
  [K in keyof T]-?: NonNullable<T[K]> extends number | string | bigint ? K : never;
}[keyof T] &
  string;

/**
 * Write-behind for one of the application's own TypeORM entities, into its own table. Registered by
 * `WriteBackModule.forFeature([Entity])`, injected with `@InjectWriteBackRepository(Entity)`. Rows share the
 * instance's dirty set, flusher, WAL, dead letters, health and metrics; writes resolve like `WriteBackService.set`
 * (accepted in memory, WAL-synced, or with `writeThrough` committed). Changes of one row coalesce between flushes
 * into one statement row; a flush writes a batch with one statement per entity.
 *
 * Not written behind: relations and cascades (refused at start), generated primary keys (the app assigns the key),
 * TypeORM subscribers and listeners (`@BeforeInsert` ...), which never see these writes.
 */
export class WriteBackRepository<T extends ObjectLiteral> {
  /** @internal Built by `WriteBackModule.forFeature`. */
  constructor(
    private readonly service: WriteBackService,
    /** @internal */ readonly table: EntityTable<T>,
  ) {}

  /** The entity's name (TypeORM's). */
  get entityName(): string {
    return this.table.name;
  }

  /**
   * Writes the whole row: inserted if absent, else every column the entity holds is set. Properties left
   * `undefined` are not written: an existing row keeps them, a new row gets the column's default. The primary key
   * must be set. `@UpdateDateColumn` is set to now unless given; the `@VersionColumn` is the module's.
   */
  save(entity: T | Partial<T>, options?: WriteBackSetOptions): Promise<void> {
    try {
      const { key, values } = this.table.keyOf(entity);
      const doc = this.table.document(entity);
      Object.assign(doc, this.table.primaryDocument(values));
      this.stampUpdateDate(doc);
      return this.service.writeEntityRow(key, this.serialize(key, doc), options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Sets only the named columns of the row with primary key `id` (a column set to `null` becomes SQL NULL; a json
   * column's value is replaced whole). Columns not named keep whatever the row holds, whoever wrote it. An update of
   * an absent row does nothing, as SQL UPDATE does.
   */
  update(id: WriteBackEntityId<T>, partial: Partial<T>, options?: WriteBackSetOptions): Promise<void> {
    try {
      const { key } = this.table.keyOf(id);
      if (partial === null || typeof partial !== 'object') {
        throw new WriteBackValidationError(`Entity ${this.table.name}: update() takes an object of the columns to set.`);
      }
      const doc = this.table.document(partial, 'partial');
      if (Object.keys(doc).length === 0) {
        throw new WriteBackValidationError(`Entity ${this.table.name}: update() names no column of the entity.`);
      }
      this.stampUpdateDate(doc);
      const json = this.serialize(key, doc);
      // A document of scalars is already a snapshot (Dates became strings); one holding arrays or json values is
      // parsed back, so the caller's objects are never shared.
      return this.service.writeEntityDelta(key, setColumnsDelta(onlyScalars(doc) ? doc : JSON.parse(json), json), options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Adds `by` (a safe integer) to a numeric column of the row, applied by Postgres to whatever the row holds then,
   * exactly once (a ledger written in the same statement), so increments from every replica add up. A NULL column
   * counts from 0; an absent row is not created.
   */
  increment(id: WriteBackEntityId<T>, column: WriteBackNumericColumn<T>, by = 1, options?: WriteBackSetOptions): Promise<void> {
    try {
      const { key } = this.table.keyOf(id);
      const target = this.table.column(column);
      if (!target.incrementable || target.primary || target === this.table.version) {
        throw new WriteBackValidationError(`Entity ${this.table.name}: column "${column}" is not a number column that can be incremented.`);
      }
      return this.service.writeEntityDelta(key, incrementColumnDelta(storedEntityKey(key), target.name, by), options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** `increment(id, column, -by)`. */
  decrement(id: WriteBackEntityId<T>, column: WriteBackNumericColumn<T>, by = 1, options?: WriteBackSetOptions): Promise<void> {
    return this.increment(id, column, typeof by === 'number' ? -by : by, options);
  }

  /** Deletes the row (flushed like a write). */
  delete(id: WriteBackEntityId<T>, options?: WriteBackSetOptions): Promise<void> {
    try {
      return this.service.writeEntityRow(this.table.keyOf(id).key, null, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * The row as this instance knows it: a pending whole row, or the stored row (loaded once, concurrent misses share
   * the load) with pending updates and increments applied. `null` when absent or pending delete. A new entity
   * instance per call, with TypeORM's types (Date for timestamps, strings for bigint and numeric).
   */
  async findOneBy(id: WriteBackEntityId<T>): Promise<T | null> {
    const { key } = this.table.keyOf(id);
    const json = await this.service.readEntityRow(key);
    return json === undefined ? null : this.table.entity(JSON.parse(json) as Record<string, unknown>);
  }

  private stampUpdateDate(doc: Record<string, unknown>): void {
    const column = this.table.updateDate;
    if (column !== undefined && doc[column.name] === undefined) doc[column.name] = new Date().toISOString();
  }

  private serialize(key: string, doc: Record<string, unknown>): string {
    try {
      return serializeValue(this.table.name, doc, this.service.options.maxValueBytes);
    } catch {
      // Again, for the message: it names the row (built only when the value is refused).
      return serializeValue(storedEntityKey(key), doc, this.service.options.maxValueBytes);
    }
  }
}

function onlyScalars(doc: Record<string, unknown>): boolean {
  for (const key in doc) {
    const value = doc[key];
    if (value !== null && typeof value === 'object') return false;
  }
  return true;
}
