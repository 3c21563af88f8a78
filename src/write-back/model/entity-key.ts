/**
 * Keys of entity rows in the dirty set and the clean cache: `"\0" + entity name + "\0" + JSON array of the primary
 * key values in column order`. User keys can never take one (validateKey refuses NUL), so entity rows share the
 * dirty set, flusher, WAL, backpressure, health and metrics with key-value entries, coalescing per primary key.
 * Postgres text cannot hold NUL, so what reaches a table (dead letters, the delta ledger) is {@link storedEntityKey}.
 */
export const ENTITY_KEY_MARK = '\u0000';

export function entityKey(entity: string, primaryKey: readonly unknown[]): string {
  return `${ENTITY_KEY_MARK}${entity}${ENTITY_KEY_MARK}${JSON.stringify(primaryKey)}`;
}

export function isEntityKey(key: string): boolean {
  return key.charCodeAt(0) === 0;
}

/** The entity name and the primary key's JSON text of an entity key. */
export function parseEntityKey(key: string): { entity: string; primaryKey: string } {
  const end = key.indexOf(ENTITY_KEY_MARK, 1);
  return { entity: key.slice(1, end), primaryKey: key.slice(end + 1) };
}

/** `Article:[1]`: the key written to the dead-letter table (whose `entity` column names the entity). */
export function storedEntityKey(key: string): string {
  const { entity, primaryKey } = parseEntityKey(key);
  return `${entity}:${primaryKey}`;
}

/** The entity key of a dead letter's `entity` and `key` columns. */
export function entityKeyOfStored(entity: string, stored: string): string {
  return `${ENTITY_KEY_MARK}${entity}${ENTITY_KEY_MARK}${stored.slice(entity.length + 1)}`;
}
