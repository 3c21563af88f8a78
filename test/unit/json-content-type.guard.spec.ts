import type { ExecutionContext } from '@nestjs/common';
import { UnsupportedMediaTypeException } from '@nestjs/common';
import { describe, expect, it } from 'vitest';
import { charsetOf, JsonContentTypeGuard } from '../../src/kv/json-content-type.guard.js';

const guard = new JsonContentTypeGuard();

/** A request as the guard sees it. */
function context(method: string, headers: Record<string, string>): ExecutionContext {
  return { getType: () => 'http', switchToHttp: () => ({ getRequest: () => ({ method, headers }) }) } as unknown as ExecutionContext;
}

const passes = (method: string, headers: Record<string, string>) => {
  try {
    return guard.canActivate(context(method, headers));
  } catch (error) {
    if (error instanceof UnsupportedMediaTypeException) return false;
    throw error;
  }
};

describe('JsonContentTypeGuard (no simple cross-site requests)', () => {
  it('lets reads through whatever they carry', () => {
    expect(passes('GET', { 'content-type': 'text/plain', 'content-length': '3' })).toBe(true);
    expect(passes('HEAD', {})).toBe(true);
  });

  it('asks a POST for application/json even without a body; PUT and DELETE only when they have one', () => {
    expect(passes('POST', {})).toBe(false);
    expect(passes('POST', { 'content-type': 'text/plain' })).toBe(false);
    expect(passes('POST', { 'content-type': 'application/json' })).toBe(true);
    expect(passes('DELETE', {})).toBe(true);
    expect(passes('DELETE', { 'content-type': 'text/plain', 'content-length': '2' })).toBe(false);
    expect(passes('PUT', { 'content-type': 'application/x-www-form-urlencoded', 'transfer-encoding': 'chunked' })).toBe(false);
    expect(passes('PUT', { 'content-type': 'Application/JSON; charset=UTF-8', 'content-length': '1' })).toBe(true);
  });

  it('takes JSON Merge Patch on PATCH only, and UTF-8 or UTF-16 only', () => {
    expect(passes('PATCH', { 'content-type': 'application/merge-patch+json', 'content-length': '2' })).toBe(true);
    expect(passes('PUT', { 'content-type': 'application/merge-patch+json', 'content-length': '2' })).toBe(false);
    expect(passes('PUT', { 'content-type': 'application/json; charset=utf-16le', 'content-length': '2' })).toBe(true);
    expect(passes('PUT', { 'content-type': 'application/json; charset=latin1', 'content-length': '2' })).toBe(false);
    expect(charsetOf('application/json; charset="UTF-8"')).toBe('utf-8');
    expect(charsetOf(undefined)).toBe('utf-8');
  });
});
