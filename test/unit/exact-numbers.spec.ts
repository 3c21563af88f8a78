import { describe, expect, it } from 'vitest';
import { inexactNumber, isExact } from '../../src/kv/exact-numbers.js';

describe('inexactNumber (numbers a JavaScript number cannot hold exactly)', () => {
  it('accepts numbers a double holds exactly, in any notation', () => {
    for (const literal of ['0', '-0', '1', '42.5', '0.1', '1e5', '1E-7', '2.50', '9007199254740991', '-9007199254740991', '1.7976931348623157e308', '5e-324', '123456789012345.6', '100000000000000000000000']) {
      expect(isExact(literal), literal).toBe(true);
    }
  });

  it('refuses numbers whose value would change: beyond 2^53, too many digits, out of range', () => {
    for (const literal of ['9007199254740993', '12345678901234567890123', '0.10000000000000001', '1e400', '-1e400', '1e-400', '3.141592653589793238']) {
      expect(isExact(literal), literal).toBe(false);
    }
  });

  it('finds the first inexact number of a JSON text, never one inside a string', () => {
    expect(inexactNumber('{"a":1,"b":[2.5,{"c":9007199254740993}]}')).toBe('9007199254740993');
    expect(inexactNumber('{"9007199254740993":"12345678901234567890123","n":1}')).toBeUndefined();
    expect(inexactNumber('"a \\" 9007199254740993 \\\\" ')).toBeUndefined();
    expect(inexactNumber('[1, 2, 3]')).toBeUndefined();
    expect(inexactNumber('true')).toBeUndefined();
    expect(inexactNumber('-12345678901234567890')).toBe('-12345678901234567890');
  });
});
