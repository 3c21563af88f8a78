import {
  WriteBackInvalidKeyError,
  WriteBackInvalidValueError,
  WriteBackValueTooLargeError,
  truncate,
} from '../write-back.errors.js';

/** Throws {@link WriteBackInvalidKeyError} unless `key` is a non-empty string Postgres `text` accepts. */
export function validateKey(key: unknown, maxKeyLength: number): asserts key is string {
  if (typeof key !== 'string') {
    throw new WriteBackInvalidKeyError(`Key must be a string, got ${key === null ? 'null' : typeof key}.`);
  }
  if (key.length === 0) throw new WriteBackInvalidKeyError('Key must not be empty.');
  if (key.length > maxKeyLength) {
    throw new WriteBackInvalidKeyError(
      `Key "${truncate(key)}" is ${key.length} characters long, over "maxKeyLength" (${maxKeyLength}).`,
    );
  }
  if (!key.isWellFormed()) {
    throw new WriteBackInvalidKeyError(
      `Key "${truncate(key.toWellFormed())}" contains a lone UTF-16 surrogate; Postgres would store it as U+FFFD, so distinct keys could collide.`,
    );
  }
  if (key.includes('\u0000')) {
    throw new WriteBackInvalidKeyError(`Key "${truncate(key.replace(/\u0000/g, '\\0'))}" contains a NUL character, which Postgres text rejects.`);
  }
}

function rejectUnrepresentable(this: unknown, _key: string, value: unknown): unknown {
  const type = typeof value;
  if (type === 'function' || type === 'symbol') {
    throw new WriteBackInvalidValueError(`Values must be JSON: found a ${type}.`);
  }
  if (type === 'number' && !Number.isFinite(value as number)) {
    throw new WriteBackInvalidValueError(`Values must be JSON: found ${String(value)}, which JSON turns into null.`);
  }
  return value;
}

const MAX_PLAIN_DEPTH = 64;
const dateToJSON = Date.prototype.toJSON;
const objectPrototype = Object.prototype;

/**
 * True when plain `JSON.stringify` (no replacer, about twice as fast) serializes `value` the way the checking
 * replacer would: no function, symbol, non-finite number or BigInt anywhere, no custom `toJSON`, and not deeper
 * than 64 levels (which also bounds a cycle). Otherwise false, and the replacer path decides and explains.
 *
 * It runs on every `set`, so it is written for V8: strings, booleans and finite numbers, the common property
 * values, are checked inline without a call; a plain object (prototype `Object.prototype`) is walked with
 * `for...in`, which reads V8's enum cache instead of allocating a key array like `Object.keys`. For such an
 * object `for...in` visits its own enumerable keys (what JSON.stringify writes) plus any enumerable property
 * someone added to `Object.prototype`; checking such an extra value can only make the answer false, which
 * sends the value to the exact (replacer) path.
 */
function isPlainJson(value: unknown, depth: number): boolean {
  if (typeof value !== 'object') {
    if (typeof value === 'string' || typeof value === 'boolean') return true;
    if (typeof value === 'number') return Number.isFinite(value);
    return value === undefined && depth > 0;
  }
  if (value === null) return true;
  if (depth >= MAX_PLAIN_DEPTH) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!isPlainJson(value[i], depth + 1)) return false;
    return true;
  }
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (toJSON !== undefined) return toJSON === dateToJSON;
  const record = value as Record<string, unknown>;
  if (Object.getPrototypeOf(value) !== objectPrototype) {
    for (const key of Object.keys(record)) if (!isPlainJson(record[key], depth + 1)) return false;
    return true;
  }
  for (const key in record) {
    const item = record[key];
    if (typeof item === 'string' || typeof item === 'boolean') continue;
    if (typeof item === 'number') {
      if (!Number.isFinite(item)) return false;
    } else if (!isPlainJson(item, depth + 1)) {
      return false;
    }
  }
  return true;
}

// JSON.stringify escapes NUL as \u0000 and lone surrogates as \udXXX; an odd run of backslashes before the
// escape means it is an escape, not literal text. Postgres jsonb rejects both (22P05 / 22P02).
const NUL_ESCAPE = /(?<!\\)(?:\\\\)*\\u0000/;
const LONE_SURROGATE_ESCAPE = /(?<!\\)(?:\\\\)*\\ud[89a-f][0-9a-f]{2}/i;

/**
 * Serializes once at `set`: the JSON text is the snapshot that is cached, logged and flushed, so later changes
 * to the caller's object change nothing. Throws {@link WriteBackInvalidValueError} or
 * {@link WriteBackValueTooLargeError} for values jsonb cannot hold or that are over `maxValueBytes`.
 */
export function serializeValue(key: string, value: unknown, maxValueBytes: number): string {
  if (value === undefined) {
    throw new WriteBackInvalidValueError(`Value for key "${truncate(key)}" is undefined; use delete() to remove a key.`);
  }
  let json: string | undefined;
  try {
    json = isPlainJson(value, 0) ? JSON.stringify(value) : JSON.stringify(value, rejectUnrepresentable);
  } catch (error) {
    if (error instanceof WriteBackInvalidValueError) {
      throw new WriteBackInvalidValueError(`Value for key "${truncate(key)}" is not JSON: ${error.message}`);
    }
    // BigInt and circular structures: JSON.stringify throws a TypeError.
    throw new WriteBackInvalidValueError(
      `Value for key "${truncate(key)}" is not JSON: ${(error as Error).message}`,
      { cause: error },
    );
  }
  if (json === undefined) {
    throw new WriteBackInvalidValueError(`Value for key "${truncate(key)}" has no JSON form (${typeof value}).`);
  }
  // Both escapes start with \u, which most JSON texts do not hold at all: one scan rules both out.
  if (json.includes('\\u')) {
    if (NUL_ESCAPE.test(json)) {
      throw new WriteBackInvalidValueError(
        `Value for key "${truncate(key)}" contains the character \\u0000, which Postgres jsonb rejects.`,
      );
    }
    if (LONE_SURROGATE_ESCAPE.test(json)) {
      throw new WriteBackInvalidValueError(
        `Value for key "${truncate(key)}" contains a lone UTF-16 surrogate, which Postgres jsonb rejects.`,
      );
    }
  }
  // A UTF-16 unit is at most 3 UTF-8 bytes: count exactly only when the bound can be crossed.
  if (json.length * 3 > maxValueBytes) {
    const bytes = Buffer.byteLength(json, 'utf8');
    if (bytes > maxValueBytes) throw new WriteBackValueTooLargeError(key, bytes, maxValueBytes);
  }
  return json;
}
