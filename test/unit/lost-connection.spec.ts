import { describe, expect, it } from 'vitest';
import { isLostConnection } from '../../src/write-back/store/error-classifier.js';

const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

describe('isLostConnection (which failed loads are tried again on another connection)', () => {
  it.each([
    ['a reset socket', withCode('read ECONNRESET', 'ECONNRESET')],
    ['a broken pipe', withCode('write EPIPE', 'EPIPE')],
    ['pg ending the client', new Error('Connection terminated unexpectedly')],
    ['an admin shutdown (57P01)', withCode('terminating connection due to administrator command', '57P01')],
    ['a connection exception (08006)', withCode('connection failure', '08006')],
    ['TypeORM wrapping a reset', Object.assign(new Error('read ECONNRESET'), { driverError: withCode('read ECONNRESET', 'ECONNRESET') })],
  ])('retries %s', (_name, error) => {
    expect(isLostConnection(error)).toBe(true);
  });

  it.each([
    ['a refused connection', withCode('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED')],
    ['an unknown host', withCode('getaddrinfo ENOTFOUND db', 'ENOTFOUND')],
    ['a connect timeout', new Error('timeout exceeded when trying to connect')],
    ['a statement timeout (57014)', withCode('canceling statement due to statement timeout', '57014')],
    ['a missing table (42P01)', withCode('relation "write_back_entries" does not exist', '42P01')],
    ['a data error (22P02)', withCode('invalid input syntax', '22P02')],
  ])('does not retry %s', (_name, error) => {
    expect(isLostConnection(error)).toBe(false);
  });
});
