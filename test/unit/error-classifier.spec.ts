import { describe, expect, it } from 'vitest';
import { classifyError, errorCode, sqlState } from '../../src/write-back/store/error-classifier.js';

function pgError(code: string, message = `error ${code}`): Error {
  return Object.assign(new Error(message), { code });
}

/** Shaped like TypeORM's QueryFailedError: the driver's error under `driverError`, no code of its own. */
function queryFailed(code: string): Error {
  return Object.assign(new Error('query failed'), { driverError: pgError(code), query: 'INSERT ...', parameters: [] });
}

describe('classifyError', () => {
  it.each([
    ['08006', 'connection failure'],
    ['08001', 'unable to connect'],
    ['40001', 'serialization failure'],
    ['40P01', 'deadlock'],
    ['53300', 'too many connections'],
    ['53100', 'disk full'],
    ['57P01', 'admin shutdown'],
    ['57014', 'statement timeout (query canceled)'],
    ['42P01', 'unknown state: undefined table'],
    ['XX000', 'internal error'],
  ])('%s (%s) is transient', (code) => {
    expect(classifyError(pgError(code))).toBe('transient');
    expect(classifyError(queryFailed(code))).toBe('transient');
  });

  it.each([
    ['23514', 'check violation'],
    ['23502', 'not null violation'],
    ['23505', 'unique violation'],
    ['22P02', 'invalid text representation'],
    ['22P05', 'untranslatable character'],
    ['22001', 'string too long'],
    ['54000', 'program limit exceeded'],
  ])('%s (%s) is permanent', (code) => {
    expect(classifyError(pgError(code))).toBe('permanent');
    expect(classifyError({ code })).toBe('permanent');
    expect(classifyError(queryFailed(code))).toBe('permanent');
  });

  it('errors with no code are transient (connection lost, timeouts)', () => {
    expect(classifyError(new Error('Connection terminated unexpectedly'))).toBe('transient');
    expect(classifyError(new Error('timeout exceeded when trying to connect'))).toBe('transient');
    expect(classifyError(undefined)).toBe('transient');
    expect(classifyError(null)).toBe('transient');
    expect(classifyError('boom')).toBe('transient');
    expect(classifyError({})).toBe('transient');
  });

  it('Node socket errors are transient', () => {
    expect(classifyError(pgError('ECONNRESET'))).toBe('transient');
    expect(classifyError(pgError('ECONNREFUSED'))).toBe('transient');
    expect(classifyError(pgError('ETIMEDOUT'))).toBe('transient');
    expect(classifyError(pgError('EPIPE'))).toBe('transient');
    expect(classifyError(queryFailed('ECONNRESET'))).toBe('transient');
  });

  it('unwraps a QueryFailedError-like driverError (the outer error has no SQLSTATE)', () => {
    expect(classifyError({ message: 'x', driverError: { code: '23514' } })).toBe('permanent');
    expect(classifyError({ message: 'x', driverError: { code: '08006' } })).toBe('transient');
  });

  it('does not loop on an error that is its own driverError', () => {
    const error: Record<string, unknown> = { message: 'x' };
    error.driverError = error;
    expect(classifyError(error)).toBe('transient');
    expect(errorCode(error)).toBeUndefined();
  });
});

describe('sqlState / errorCode', () => {
  it('sqlState reads a five-character SQLSTATE, directly or from driverError', () => {
    expect(sqlState(pgError('23514'))).toBe('23514');
    expect(sqlState(queryFailed('40P01'))).toBe('40P01');
    expect(sqlState(pgError('ECONNRESET'))).toBeUndefined();
    // Five characters like a SQLSTATE, but Node error codes (no SQLSTATE class starts with E).
    expect(sqlState(pgError('EPIPE'))).toBeUndefined();
    expect(errorCode(pgError('EPIPE'))).toBe('EPIPE');
    expect(sqlState(pgError('XX000'))).toBe('XX000');
    expect(sqlState(new Error('x'))).toBeUndefined();
    expect(sqlState({ code: 23514 })).toBeUndefined();
  });

  it('errorCode falls back to the Node error code', () => {
    expect(errorCode(pgError('23514'))).toBe('23514');
    expect(errorCode(queryFailed('23514'))).toBe('23514');
    expect(errorCode(pgError('ECONNRESET'))).toBe('ECONNRESET');
    expect(errorCode(queryFailed('ECONNRESET'))).toBe('ECONNRESET');
    expect(errorCode(new Error('x'))).toBeUndefined();
    expect(errorCode('x')).toBeUndefined();
  });
});
