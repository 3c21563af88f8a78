import { WriteBackInvalidDeltaError } from '../write-back.errors.js';

export type JsonObject = { [field: string]: unknown };

/**
 * A change relative to the stored value, not a value: first the merge patches (RFC 7396) in order, then the
 * increments. `inc` is a number when the value is a JSON number, or an object of numbers added to top-level
 * fields. Deltas are immutable: composing builds a new one, so a snapshot taken for a flush never changes.
 */
export interface Delta {
  readonly patches?: readonly JsonObject[];
  readonly inc?: number | Readonly<Record<string, number>>;
  /**
   * A flat delta (an entity row's columns): `set` names columns and their new values, then `inc` adds to columns.
   * Unlike merge patches a value is never merged into: a later value of a column replaces an earlier one, `null`
   * is SQL NULL (not a removal) and a jsonb column value is replaced whole. Flat deltas never hold `patches`.
   */
  readonly flat?: true;
  readonly set?: Readonly<Record<string, unknown>>;
  /** The JSON text of `set` when the caller already serialized it (a snapshot's own text; never out of date). */
  readonly setText?: string;
}

/**
 * A flat delta setting `columns`: a snapshot the caller no longer holds (serialized and parsed back, or a fresh
 * object of primitives), with `text` its JSON text when known.
 */
export function setColumnsDelta(columns: Record<string, unknown>, text?: string): Delta {
  return text === undefined ? { flat: true, set: columns } : { flat: true, set: columns, setText: text };
}

/** What a delta weighs in memory, in UTF-16 units of its JSON (the bound `maxDirtyBytes` counts). */
export function deltaSize(delta: Delta): number {
  let size = 0;
  if (delta.patches !== undefined) for (const patch of delta.patches) size += JSON.stringify(patch).length;
  if (delta.set !== undefined) size += (delta.setText ?? JSON.stringify(delta.set)).length;
  if (delta.inc !== undefined) size += typeof delta.inc === 'number' ? 16 : 24 * Object.keys(delta.inc).length;
  return size;
}

/** A flat delta adding `by` (a safe integer, checked) to `column`. */
export function incrementColumnDelta(key: string, column: string, by: unknown): Delta {
  checkAddend(key, `increment of column "${column}"`, by);
  return { flat: true, inc: { [column]: by } };
}

const isObject = (value: unknown): value is JsonObject =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Checks an `increment` argument: a safe integer, or a non-empty object of safe integers. */
export function incrementDelta(key: string, by: unknown): Delta {
  if (typeof by === 'number') {
    checkAddend(key, 'delta', by);
    return { inc: by };
  }
  if (!isObject(by) || Object.getPrototypeOf(by) !== Object.prototype && Object.getPrototypeOf(by) !== null) {
    throw new WriteBackInvalidDeltaError(key, 'an increment is a number or a plain object of numbers, e.g. { views: 1 }');
  }
  const fields = Object.keys(by);
  if (fields.length === 0) throw new WriteBackInvalidDeltaError(key, 'an increment object needs at least one field');
  const inc: Record<string, number> = {};
  for (const field of fields) {
    checkField(key, field);
    checkAddend(key, `field "${field}"`, by[field]);
    inc[field] = by[field] as number;
  }
  return { inc };
}

/** Checks a `merge` argument: a JSON object (the patch), already validated as JSON by the caller. */
export function mergeDelta(key: string, patch: unknown): Delta {
  if (!isObject(patch)) {
    throw new WriteBackInvalidDeltaError(key, 'a merge patch must be a JSON object (RFC 7396); to replace the value, use set()');
  }
  return { patches: [patch] };
}

function checkField(key: string, field: string): void {
  if (field === '__proto__' || field.includes('\u0000') || !field.isWellFormed()) {
    throw new WriteBackInvalidDeltaError(key, `field ${JSON.stringify(field)} cannot be stored`);
  }
}

function checkAddend(key: string, what: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new WriteBackInvalidDeltaError(
      key,
      `${what} must be an integer between -(2^53-1) and 2^53-1, got ${typeof value === 'number' ? String(value) : typeof value} ` +
        '(sums of integers stay exact in JavaScript and in Postgres alike)',
    );
  }
}

/** `prev` then `next` as one delta. Throws when the two cannot apply to one value (a number and an object). */
export function composeDelta(key: string, prev: Delta | undefined, next: Delta): Delta {
  if (prev === undefined) return next;
  if (prev.flat === true || next.flat === true) return composeFlat(key, prev, next);
  if (next.patches !== undefined) {
    if (typeof prev.inc === 'number') {
      throw new WriteBackInvalidDeltaError(key, 'a merge patch cannot follow a number increment: the value is a number');
    }
    let patches = prev.patches ?? [];
    let inc = prev.inc as Readonly<Record<string, number>> | undefined;
    for (const patch of next.patches) {
      // Fields a later patch sets or removes replace what earlier increments did to them; the others commute.
      if (inc !== undefined) inc = withoutFields(inc, patch);
      const last = patches.at(-1);
      const composed = last === undefined ? undefined : composePatches(last, patch);
      patches = composed === undefined ? [...patches, patch] : [...patches.slice(0, -1), composed];
    }
    return inc === undefined ? { patches } : { patches, inc };
  }
  const by = next.inc!;
  if (prev.inc === undefined) {
    if (typeof by === 'number' && prev.patches !== undefined) {
      throw new WriteBackInvalidDeltaError(key, 'a number increment cannot follow a merge patch: the value is an object');
    }
    return { ...prev, inc: by };
  }
  if (typeof by !== typeof prev.inc) {
    throw new WriteBackInvalidDeltaError(key, 'a number increment and a field increment cannot apply to one value');
  }
  if (typeof by === 'number') return { inc: addSafely(key, 'the value', prev.inc as number, by) };
  const inc: Record<string, number> = { ...(prev.inc as Record<string, number>) };
  for (const [field, add] of Object.entries(by)) inc[field] = addSafely(key, `field "${field}"`, inc[field] ?? 0, add);
  return { ...prev, inc };
}

/** Flat deltas: a later value of a column replaces the earlier one and what earlier increments did to it. */
function composeFlat(key: string, prev: Delta, next: Delta): Delta {
  if (prev.flat !== true || next.flat !== true) {
    throw new WriteBackInvalidDeltaError(key, 'a row update cannot be composed with a key-value delta');
  }
  let set = prev.set;
  let inc = prev.inc as Readonly<Record<string, number>> | undefined;
  if (next.set !== undefined) {
    set = { ...set, ...next.set };
    if (inc !== undefined) inc = withoutFields(inc, next.set as JsonObject);
  }
  if (next.inc !== undefined) {
    const sum: Record<string, number> = { ...inc };
    for (const [column, add] of Object.entries(next.inc as Record<string, number>)) {
      sum[column] = addSafely(key, `column "${column}"`, sum[column] ?? 0, add);
    }
    inc = sum;
  }
  const delta: { flat: true; set?: Readonly<Record<string, unknown>>; inc?: Readonly<Record<string, number>> } = { flat: true };
  if (set !== undefined) delta.set = set;
  if (inc !== undefined) delta.inc = inc;
  return delta;
}

/**
 * A flat delta applied to a row (column name -> value): an update of an absent row does nothing (undefined), as
 * SQL UPDATE does. Increments add to numbers, and to the decimal strings TypeORM uses for bigint and numeric
 * columns, exactly; a NULL column counts from 0.
 */
function applyFlat(key: string, value: unknown, delta: Delta): unknown {
  if (value === undefined) return undefined;
  if (!isObject(value)) throw new WriteBackInvalidDeltaError(key, `a row update needs a row, found ${describe(value)}`);
  const next: JsonObject = delta.set === undefined ? { ...value } : { ...value, ...delta.set };
  for (const [column, by] of Object.entries((delta.inc ?? {}) as Record<string, number>)) {
    const current = next[column] ?? 0;
    if (typeof current === 'number') next[column] = Number.isInteger(current) ? addSafely(key, `column "${column}"`, current, by) : current + by;
    else if (typeof current === 'string' && DECIMAL.test(current)) next[column] = addDecimal(current, by);
    else throw new WriteBackInvalidDeltaError(key, `column "${column}" is ${describe(current)}, not a number`);
  }
  return next;
}

const DECIMAL = /^-?\d+(\.\d+)?$/;

/** `text` (a decimal string) + `by` (a safe integer), exact, keeping the scale of `text`. */
export function addDecimal(text: string, by: number): string {
  const point = text.indexOf('.');
  const scale = point < 0 ? 0 : text.length - point - 1;
  const units = BigInt(point < 0 ? text : text.slice(0, point) + text.slice(point + 1)) + BigInt(by) * 10n ** BigInt(scale);
  if (scale === 0) return units.toString();
  const negative = units < 0n;
  const digits = (negative ? -units : units).toString().padStart(scale + 1, '0');
  return `${negative ? '-' : ''}${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}

function withoutFields(inc: Readonly<Record<string, number>>, patch: JsonObject): Readonly<Record<string, number>> | undefined {
  let kept: Record<string, number> | undefined;
  for (const [field, by] of Object.entries(inc)) if (!Object.hasOwn(patch, field)) (kept ??= {})[field] = by;
  return kept;
}

/**
 * One patch that does what `first` then `second` do, or undefined when none can: `second` merging an object into
 * a field that `first` removed or set to a non-object must replace that field, which a patch cannot say (an object
 * in a patch merges). Such patches stay two.
 */
export function composePatches(first: JsonObject, second: JsonObject): JsonObject | undefined {
  const result: JsonObject = { ...first };
  for (const [field, value] of Object.entries(second)) {
    if (!isObject(value) || !Object.hasOwn(first, field)) {
      result[field] = value;
      continue;
    }
    const before = first[field];
    if (!isObject(before)) return undefined;
    const inner = composePatches(before, value);
    if (inner === undefined) return undefined;
    result[field] = inner;
  }
  return result;
}

/** RFC 7396: applies `patch` to `target` (undefined: absent). Returns a new value; `target` is not changed. */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const result: JsonObject = isObject(target) ? { ...target } : {};
  for (const [field, value] of Object.entries(patch)) {
    if (value === null) delete result[field];
    else result[field] = applyMergePatch(result[field], value);
  }
  return result;
}

/**
 * The value after `delta`, from `value` (undefined: the key is absent, so a number starts at 0 and an object at
 * {}). Throws {@link WriteBackInvalidDeltaError} when the value has the wrong type or a sum leaves the safe range.
 */
export function applyDelta(key: string, value: unknown, delta: Delta): unknown {
  if (delta.flat === true) return applyFlat(key, value, delta);
  let result = value;
  for (const patch of delta.patches ?? []) result = applyMergePatch(result, patch);
  const inc = delta.inc;
  if (inc === undefined) return result;
  if (typeof inc === 'number') {
    if (result === undefined) result = 0;
    if (typeof result !== 'number') throw new WriteBackInvalidDeltaError(key, `a number increment needs a number, the value is ${describe(result)}`);
    return addSafely(key, 'the value', result, inc);
  }
  if (result === undefined) result = {};
  if (!isObject(result)) throw new WriteBackInvalidDeltaError(key, `a field increment needs an object, the value is ${describe(result)}`);
  const next: JsonObject = { ...result };
  for (const [field, by] of Object.entries(inc)) {
    const current = next[field] ?? 0;
    if (typeof current !== 'number') {
      throw new WriteBackInvalidDeltaError(key, `field "${field}" is ${describe(current)}, not a number`);
    }
    next[field] = addSafely(key, `field "${field}"`, current, by);
  }
  return next;
}

function addSafely(key: string, what: string, a: number, b: number): number {
  const sum = a + b;
  if (!Number.isSafeInteger(sum) || !Number.isSafeInteger(a)) {
    throw new WriteBackInvalidDeltaError(key, `${what} would leave the exact integer range (|n| <= 2^53-1): ${a} + ${b}`);
  }
  return sum;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * `{"p":[patches],"i":inc}`, or for a flat delta `{"f":1,"c":{columns},"i":inc}` (members omitted when absent): how
 * a delta travels to Postgres and into the WAL.
 */
export function deltaText(delta: Delta): string {
  const parts: string[] = [];
  if (delta.flat === true) parts.push('"f":1');
  if (delta.set !== undefined) parts.push(`"c":${delta.setText ?? JSON.stringify(delta.set)}`);
  if (delta.patches !== undefined) parts.push(`"p":${JSON.stringify(delta.patches)}`);
  if (delta.inc !== undefined) parts.push(`"i":${JSON.stringify(delta.inc)}`);
  return `{${parts.join(',')}}`;
}

export function parseDeltaText(text: string): Delta {
  const { p, i, f, c } = JSON.parse(text) as { p?: JsonObject[]; i?: number | Record<string, number>; f?: 1; c?: JsonObject };
  const delta: { patches?: JsonObject[]; inc?: number | Record<string, number>; flat?: true; set?: JsonObject } = {};
  if (f === 1) delta.flat = true;
  if (c !== undefined) delta.set = c;
  if (p !== undefined) delta.patches = p;
  if (i !== undefined) delta.inc = i;
  return delta;
}
