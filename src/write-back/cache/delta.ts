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

/** `{"p":[patches],"i":inc}` (members omitted when absent): how a delta travels to Postgres and into the WAL. */
export function deltaText(delta: Delta): string {
  const parts: string[] = [];
  if (delta.patches !== undefined) parts.push(`"p":${JSON.stringify(delta.patches)}`);
  if (delta.inc !== undefined) parts.push(`"i":${JSON.stringify(delta.inc)}`);
  return `{${parts.join(',')}}`;
}

export function parseDeltaText(text: string): Delta {
  const { p, i } = JSON.parse(text) as { p?: JsonObject[]; i?: number | Record<string, number> };
  const delta: { patches?: JsonObject[]; inc?: number | Record<string, number> } = {};
  if (p !== undefined) delta.patches = p;
  if (i !== undefined) delta.inc = i;
  return delta;
}
