import { describe, expect, it } from 'vitest';
import { serializeValue, validateKey } from '../../src/write-back/cache/serialize.js';
import {
  WriteBackInvalidKeyError,
  WriteBackInvalidValueError,
  WriteBackValidationError,
  WriteBackValueTooLargeError,
} from '../../src/write-back/write-back.errors.js';

const LIMIT = 1024 * 1024;

describe('serializeValue', () => {
  it('returns the JSON text of plain JSON values', () => {
    expect(serializeValue('k', { a: 1, b: [true, null, 'x'], c: { d: -0.5 } }, LIMIT)).toBe(
      '{"a":1,"b":[true,null,"x"],"c":{"d":-0.5}}',
    );
    expect(serializeValue('k', 'text', LIMIT)).toBe('"text"');
    expect(serializeValue('k', 0, LIMIT)).toBe('0');
    expect(serializeValue('k', null, LIMIT)).toBe('null');
    expect(serializeValue('k', false, LIMIT)).toBe('false');
    expect(serializeValue('k', [], LIMIT)).toBe('[]');
  });

  it('uses toJSON (a Date becomes its ISO string)', () => {
    expect(serializeValue('k', { at: new Date('2030-01-02T03:04:05.000Z') }, LIMIT)).toBe(
      '{"at":"2030-01-02T03:04:05.000Z"}',
    );
  });

  it('rejects undefined, pointing at delete()', () => {
    expect(() => serializeValue('k', undefined, LIMIT)).toThrow(WriteBackInvalidValueError);
    expect(() => serializeValue('k', undefined, LIMIT)).toThrow(/delete\(\)/);
  });

  it.each([
    ['a BigInt', 10n],
    ['a nested BigInt', { a: { b: [1n] } }],
    ['a top-level function', () => 1],
    ['a nested function', { a: { f() {} } }],
    ['a function in an array', [1, () => 2]],
    ['a top-level symbol', Symbol('s')],
    ['a nested symbol', { s: Symbol('s') }],
    ['NaN', Number.NaN],
    ['a nested NaN', { n: Number.NaN }],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['a nested -Infinity', [Number.NEGATIVE_INFINITY]],
    ['an object whose toJSON returns undefined', { toJSON: () => undefined }],
  ])('rejects %s with WriteBackInvalidValueError', (_name, value) => {
    let error: unknown;
    try {
      serializeValue('the-key', value, LIMIT);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(WriteBackInvalidValueError);
    expect(error).toBeInstanceOf(WriteBackValidationError);
    expect((error as Error).message).toContain('the-key');
  });

  it('rejects cycles', () => {
    const value: Record<string, unknown> = { a: 1 };
    value.self = { back: value };
    expect(() => serializeValue('k', value, LIMIT)).toThrow(WriteBackInvalidValueError);
  });

  it('accepts a repeated (non-cyclic) reference', () => {
    const shared = { x: 1 };
    expect(serializeValue('k', { a: shared, b: shared }, LIMIT)).toBe('{"a":{"x":1},"b":{"x":1}}');
  });

  // isPlainJson walks plain objects with for...in and checks primitive properties inline (the hot path): these
  // values reach that path directly, and must still be rejected or serialized exactly as JSON.stringify does.
  describe('the plain-object fast path', () => {
    it.each([
      ['a BigInt property', { a: 1, b: 2n }],
      ['a function property next to plain ones', { a: 'x', f: () => 1, n: 2 }],
      ['a NaN property', { a: true, n: Number.NaN }],
      ['an Infinity property', { n: Number.POSITIVE_INFINITY }],
      ['a symbol property', { a: null, s: Symbol('s') }],
      ['a nested object with a bad property', { a: { b: { c: 1, d: -Infinity } } }],
    ])('rejects %s', (_name, value) => {
      expect(() => serializeValue('k', value, LIMIT)).toThrow(WriteBackInvalidValueError);
    });

    it('keeps undefined properties out, as JSON.stringify does', () => {
      expect(serializeValue('k', { a: undefined, b: 1, c: [undefined] }, LIMIT)).toBe('{"b":1,"c":[null]}');
    });

    it('serializes only own enumerable properties of an object with another prototype (inherited ones ignored)', () => {
      const value = Object.assign(Object.create({ inherited: () => 1, x: 'proto' }), { own: 1 });
      expect(serializeValue('k', value, LIMIT)).toBe('{"own":1}');
      class Point {
        constructor(
          readonly x: number,
          readonly y: number,
        ) {}
        norm(): number {
          return Math.hypot(this.x, this.y);
        }
      }
      expect(serializeValue('k', new Point(1, 2), LIMIT)).toBe('{"x":1,"y":2}');
      expect(() => serializeValue('k', Object.assign(new Point(1, 2), { bad: Number.NaN }), LIMIT)).toThrow(
        WriteBackInvalidValueError,
      );
    });

    it('with an enumerable property added to Object.prototype, values still serialize exactly', () => {
      const proto = Object.prototype as Record<string, unknown>;
      proto.polluted = () => 1;
      try {
        expect(serializeValue('k', { a: 1, b: { c: 'x' } }, LIMIT)).toBe('{"a":1,"b":{"c":"x"}}');
        expect(() => serializeValue('k', { a: Number.NaN }, LIMIT)).toThrow(WriteBackInvalidValueError);
      } finally {
        delete proto.polluted;
      }
    });

    it('accepts other \\u escapes (control characters) and a literal backslash-u text', () => {
      expect(serializeValue('k', { a: '\u0001\u001f' }, LIMIT)).toBe('{"a":"\\u0001\\u001f"}');
      expect(serializeValue('k', { a: 'x\\ud800\\u0000' }, LIMIT)).toBe('{"a":"x\\\\ud800\\\\u0000"}');
    });
  });

  describe('strings Postgres jsonb rejects', () => {
    it('rejects a NUL character anywhere, also nested', () => {
      expect(() => serializeValue('k', '\u0000', LIMIT)).toThrow(WriteBackInvalidValueError);
      expect(() => serializeValue('k', { a: ['ok', { b: 'x\u0000y' }] }, LIMIT)).toThrow(/\\u0000/);
      expect(() => serializeValue('k', { ['x\u0000']: 1 }, LIMIT)).toThrow(WriteBackInvalidValueError);
    });

    it('rejects a NUL character right after a literal backslash', () => {
      // JSON: "\\\u0000": an escaped backslash, then the escaped NUL.
      expect(() => serializeValue('k', { a: '\\\u0000' }, LIMIT)).toThrow(WriteBackInvalidValueError);
    });

    it('accepts the literal text backslash-u0000 (not a NUL character)', () => {
      const text = '\\u0000';
      expect(text).toHaveLength(6);
      const json = serializeValue('k', { a: text, b: `x${text}y`, c: `\\\\${text}` }, LIMIT);
      expect(JSON.parse(json)).toEqual({ a: text, b: `x${text}y`, c: `\\\\${text}` });
    });

    it('rejects a lone surrogate, also nested, but accepts a valid surrogate pair', () => {
      expect(() => serializeValue('k', '\ud800', LIMIT)).toThrow(WriteBackInvalidValueError);
      expect(() => serializeValue('k', { a: ['x\udc00'] }, LIMIT)).toThrow(/surrogate/);
      expect(() => serializeValue('k', { a: 'x\ud83d' }, LIMIT)).toThrow(WriteBackInvalidValueError);
      expect(serializeValue('k', { a: '😀 ok' }, LIMIT)).toBe('{"a":"😀 ok"}');
      expect(serializeValue('k', '\ud83d\ude00', LIMIT)).toBe('"😀"');
    });

    it('accepts the literal text of a surrogate escape', () => {
      expect(JSON.parse(serializeValue('k', '\\ud800', LIMIT))).toBe('\\ud800');
    });
  });

  describe('maxValueBytes', () => {
    it('accepts a value exactly at the limit and rejects one byte over', () => {
      // '"' + 14 x 'a' + '"' = 16 bytes
      expect(serializeValue('k', 'a'.repeat(14), 16)).toBe(`"${'a'.repeat(14)}"`);
      expect(() => serializeValue('k', 'a'.repeat(15), 16)).toThrow(WriteBackValueTooLargeError);
    });

    it('counts UTF-8 bytes, not characters', () => {
      // 'é' is 2 bytes: 2 + 7 * 2 = 16 bytes in 9 characters.
      expect(() => serializeValue('k', 'é'.repeat(7), 16)).not.toThrow();
      // 8 x 'é' is 10 characters of JSON but 18 bytes.
      let error: unknown;
      try {
        serializeValue('big', 'é'.repeat(8), 16);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(WriteBackValueTooLargeError);
      expect(error).toBeInstanceOf(WriteBackValidationError);
      expect(error).toMatchObject({ key: 'big', bytes: 18, limit: 16 });
      expect((error as Error).message).toContain('maxValueBytes');

      // An emoji is 4 bytes (2 UTF-16 units): 2 + 3 * 4 = 14; 4 of them = 18.
      expect(() => serializeValue('k', '😀'.repeat(3), 16)).not.toThrow();
      expect(() => serializeValue('k', '😀'.repeat(4), 16)).toThrow(WriteBackValueTooLargeError);
      // A 3-byte character: '€'. 2 + 5 * 3 = 17.
      expect(() => serializeValue('k', '€'.repeat(5), 17)).not.toThrow();
      expect(() => serializeValue('k', '€'.repeat(5), 16)).toThrow(WriteBackValueTooLargeError);
    });
  });

  it('is a snapshot: changing the object afterwards does not change the JSON', () => {
    const value = { list: [1, 2], nested: { name: 'before' } };
    const json = serializeValue('k', value, LIMIT);
    value.list.push(3);
    value.nested.name = 'after';
    expect(json).toBe('{"list":[1,2],"nested":{"name":"before"}}');
    expect(JSON.parse(json)).toEqual({ list: [1, 2], nested: { name: 'before' } });
  });
});

describe('validateKey', () => {
  it('accepts non-empty strings up to maxKeyLength', () => {
    expect(() => validateKey('a', 10)).not.toThrow();
    expect(() => validateKey('x'.repeat(10), 10)).not.toThrow();
    expect(() => validateKey('ключ/😀:1', 10)).not.toThrow();
  });

  it.each([
    ['a number', 1],
    ['null', null],
    ['undefined', undefined],
    ['an object', { key: 'a' }],
    ['a String object', new String('a')],
  ])('rejects %s with WriteBackInvalidKeyError', (_name, key) => {
    expect(() => validateKey(key, 10)).toThrow(WriteBackInvalidKeyError);
    expect(() => validateKey(key, 10)).toThrow(/must be a string/);
  });

  it('rejects an empty key', () => {
    expect(() => validateKey('', 10)).toThrow(WriteBackInvalidKeyError);
  });

  it('rejects a key over maxKeyLength, naming the option', () => {
    let error: unknown;
    try {
      validateKey('x'.repeat(11), 10);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(WriteBackInvalidKeyError);
    expect(error).toBeInstanceOf(WriteBackValidationError);
    expect((error as Error).message).toContain('maxKeyLength');
  });

  it('rejects a key containing NUL', () => {
    expect(() => validateKey('a\u0000b', 10)).toThrow(WriteBackInvalidKeyError);
    expect(() => validateKey('\u0000', 10)).toThrow(/NUL/);
    // The literal text is fine.
    expect(() => validateKey('a\\u0000', 10)).not.toThrow();
  });
});
