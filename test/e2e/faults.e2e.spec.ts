import { Logger } from '@nestjs/common';
import type pg from 'pg';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  WriteBackInvalidKeyError,
  WriteBackInvalidValueError,
  WriteBackOverloadedError,
  WriteBackValidationError,
  WriteBackValueTooLargeError,
} from '../../src/write-back/index.js';
import { NEEDS_SERVER, connectSql, databaseUrl, isPglite, lockTable, tableRows } from '../support/database.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { until } from '../support/wait.js';
import { startWriteBack, type WriteBackTestApp } from '../support/write-back-app.js';

/** Backends of this test's write-back instance that wait on a lock (its flush, blocked by lockTable). */
async function blockedFlushPids(t: WriteBackTestApp): Promise<number[]> {
  const { rows } = await t.sql.query(
    `SELECT pid FROM pg_stat_activity
     WHERE application_name = 'nestjs-write-back' AND wait_event_type = 'Lock' AND position($1 in query) > 0`,
    [`"${t.schema}"`],
  );
  return rows.map((r) => r.pid as number);
}

async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

describe('faults, bounds and bad input on Postgres', () => {
  let t: WriteBackTestApp | undefined;
  afterEach(async () => {
    vi.restoreAllMocks();
    await t?.close();
    t = undefined;
  });

  it('rejects every kind of bad input with a typed error and changes nothing', async () => {
    t = await startWriteBack({ maxKeyLength: 16, maxValueBytes: 64 });
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const cases: [() => Promise<unknown>, new (...args: any[]) => Error][] = [
      [() => t!.service.set(42 as unknown as string, 1), WriteBackInvalidKeyError],
      [() => t!.service.set('', 1), WriteBackInvalidKeyError],
      [() => t!.service.set('k'.repeat(17), 1), WriteBackInvalidKeyError],
      [() => t!.service.set('nul\u0000key', 1), WriteBackInvalidKeyError],
      [() => t!.service.set('u', undefined), WriteBackInvalidValueError],
      [() => t!.service.set('big', { n: 10n }), WriteBackInvalidValueError],
      [() => t!.service.set('cyc', circular), WriteBackInvalidValueError],
      [() => t!.service.set('fn', { f: () => 1 }), WriteBackInvalidValueError],
      [() => t!.service.set('fn2', () => 1), WriteBackInvalidValueError],
      [() => t!.service.set('nul', { s: 'a\u0000b' }), WriteBackInvalidValueError],
      [() => t!.service.set('sur', { s: '\ud800' }), WriteBackInvalidValueError],
      [() => t!.service.set('large', { s: 'x'.repeat(100) }), WriteBackValueTooLargeError],
      [() => t!.service.set('prio', 1, { priority: 'urgent' as 'high' }), WriteBackValidationError],
      [() => t!.service.delete(''), WriteBackInvalidKeyError],
      [() => t!.service.get(undefined as unknown as string), WriteBackInvalidKeyError],
    ];
    for (const [call, type] of cases) {
      const error = await call().then(() => undefined, (e: unknown) => e);
      expect(error, String(call)).toBeInstanceOf(type);
      expect(error).toBeInstanceOf(WriteBackValidationError);
      expect((error as Error).message.length).toBeGreaterThan(10);
    }
    expect(t.service.stats()).toMatchObject({ writes: 0, dirty: 0 });
    await expect(t.service.flush()).resolves.toMatchObject({ requested: 0 });
    expect((await tableRows(t.sql)).size).toBe(0);
    // The literal text backslash-u0000 is fine: it is not a NUL character.
    await t.service.set('literal', { s: '\\u0000' });
    await t.service.flush();
    expect((await tableRows(t.sql)).get('literal')?.value).toEqual({ s: '\\u0000' });
  });

  it('backpressure "reject": past maxDirtyEntries a new key fails at once, rewrites of dirty keys still pass', async () => {
    t = await startWriteBack({ maxDirtyEntries: 5, backpressure: 'reject' });
    for (let i = 0; i < 5; i++) await t.service.set(`r${i}`, i);
    const error = await t.service.set('r5', 5).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WriteBackOverloadedError);
    expect((error as Error).message).toContain('maxDirtyEntries');
    expect(await t.service.get('r5')).toBeUndefined();
    await t.service.set('r0', 'rewritten');
    expect(t.service.stats().dirty).toBe(5);
    await t.service.flush();
    await t.service.set('r5', 5);
    await t.service.flush();
    const rows = await tableRows(t.sql);
    expect(rows.size).toBe(6);
    expect(rows.get('r0')?.value).toBe('rewritten');
  });

  it('backpressure "block": set waits for room and resolves once a flush frees it, or fails after the timeout', async () => {
    t = await startWriteBack({ maxDirtyEntries: 5, backpressure: 'block', backpressureTimeoutMs: 10_000 });
    for (let i = 0; i < 5; i++) await t.service.set(`b${i}`, i);
    const waiting = t.service.set('b5', 5);
    expect(await settled(waiting)).toBe(false);
    expect(t.service.stats().dirty).toBe(5);
    await t.service.flush();
    await waiting;
    expect(await t.service.get('b5')).toBe(5);
    await t.service.flush();
    expect((await tableRows(t.sql)).size).toBe(6);
    await t.close();

    t = await startWriteBack({ maxDirtyEntries: 2, backpressure: 'block', backpressureTimeoutMs: 50 });
    await t.service.set('x1', 1);
    await t.service.set('x2', 2);
    const started = Date.now();
    await expect(t.service.set('x3', 3)).rejects.toBeInstanceOf(WriteBackOverloadedError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(await t.service.get('x3')).toBeUndefined();
  });

  it('dead-letters only the poison row of a batch, commits the rest, and a replay after the fix commits it', async () => {
    t = await startWriteBack({ maxRetries: 3 });
    await t.sql.query(`ALTER TABLE write_back_entries ADD CONSTRAINT no_poison CHECK ((value->>'bad') IS DISTINCT FROM 'yes')`);
    for (let i = 0; i < 200; i++) await t.service.set(`p${i}`, i === 137 ? { bad: 'yes', i } : { i });
    await t.service.delete('p-unknown');
    const report = await t.service.flush();
    expect(report).toMatchObject({ requested: 201, committed: 200, deadLettered: 1 });
    const rows = await tableRows(t.sql);
    expect(rows.size).toBe(199);
    expect(rows.has('p137')).toBe(false);
    const letters = await t.service.listDeadLetters();
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ key: 'p137', value: { bad: 'yes', i: 137 }, operation: 'upsert', errorCode: '23514', attempts: 3 });
    expect(letters[0].errorMessage).toContain('no_poison');
    expect(t.service.stats()).toMatchObject({ deadLettered: 1, dirty: 0 });
    // Memory agrees with the table: the rejected value is not served.
    expect(await t.service.get('p137')).toBeUndefined();

    await t.sql.query('ALTER TABLE write_back_entries DROP CONSTRAINT no_poison');
    await expect(t.service.replayDeadLetter(letters[0].id)).resolves.toEqual({ requeued: true, outcome: 'committed' });
    await t.service.flush();
    expect((await tableRows(t.sql)).get('p137')?.value).toEqual({ bad: 'yes', i: 137 });
    expect(await t.service.listDeadLetters()).toHaveLength(0);
    expect(await t.service.countDeadLetters()).toBe(0);
  });

  it('a dead letter can be discarded, and a replay never overwrites a newer write', async () => {
    t = await startWriteBack({ maxRetries: 1 });
    await t.sql.query(`ALTER TABLE write_back_entries ADD CONSTRAINT no_poison CHECK ((value->>'bad') IS DISTINCT FROM 'yes')`);
    await t.service.set('q1', { bad: 'yes' });
    await t.service.set('q2', { bad: 'yes' });
    await t.service.flush();
    const [first, second] = await t.service.listDeadLetters();
    await t.service.discardDeadLetter(first.id);
    await expect(t.service.discardDeadLetter(first.id)).rejects.toThrow(/does not exist/);
    await t.service.set('q2', { fixed: true });
    await t.service.flush();
    await t.sql.query('ALTER TABLE write_back_entries DROP CONSTRAINT no_poison');
    await expect(t.service.replayDeadLetter(second.id)).resolves.toEqual({ requeued: false, outcome: 'superseded' });
    await t.service.flush();
    const rows = await tableRows(t.sql);
    expect(rows.get('q2')?.value).toEqual({ fixed: true });
    expect(rows.has('q1')).toBe(false);
    expect(await t.service.countDeadLetters()).toBe(0);
  });

  it.skipIf(isPglite())(`keeps a write that arrives while its key is being flushed (${NEEDS_SERVER})`, async () => {
    t = await startWriteBack();
    await t.service.set('race', { v: 1 });
    await t.service.set('other', { v: 1 });
    const lock = await lockTable(t);
    const flushing = t.service.flush();
    await until(async () => (await blockedFlushPids(t!)).length > 0, 10_000, 'the flush to block on the lock');
    expect(t.service.stats().inFlight).toBe(2);
    await t.service.set('race', { v: 2 });
    expect(await t.service.get('race')).toEqual({ v: 2 });
    await lock.release();
    await flushing;
    // The batch committed v1; v2 arrived meanwhile, so the entry stayed dirty (and the same round or the next
    // flush writes it): v2 must end up in the table, not be marked clean with v1.
    await t.service.flush();
    expect((await tableRows(t.sql)).get('race')?.value).toEqual({ v: 2 });
    expect(await t.service.get('race')).toEqual({ v: 2 });
    expect(t.service.stats().dirty).toBe(0);
  });

  it.skipIf(isPglite())(`retries a flush whose connection is cut, dead-letters nothing and loses nothing (${NEEDS_SERVER})`, async () => {
    t = await startWriteBack({ retryBaseDelayMs: 10, retryMaxDelayMs: 50 });
    for (let i = 0; i < 300; i++) await t.service.set(`c${i}`, { i });
    const lock = await lockTable(t);
    const flushing = t.service.flush();
    await until(async () => (await blockedFlushPids(t!)).length > 0, 10_000, 'the flush to block on the lock');
    const pids = await blockedFlushPids(t);
    await t.sql.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
    await lock.release();
    const report = await flushing;
    expect(report).toMatchObject({ requested: 300, committed: 300, deadLettered: 0 });
    const stats = t.service.stats();
    expect(stats.retries).toBeGreaterThanOrEqual(1);
    expect(stats.lastError?.code).toBe('57P01');
    expect(stats.deadLettered).toBe(0);
    const rows = await tableRows(t.sql);
    expect(rows.size).toBe(300);
    for (let i = 0; i < 300; i++) expect(rows.get(`c${i}`)?.value).toEqual({ i });
    expect(await t.service.countDeadLetters()).toBe(0);
  });

  it('a get miss whose pooled connection turns out dead reads on a fresh one instead of failing', async () => {
    const proxy = await TcpProxy.start(databaseUrl());
    try {
      t = await startWriteBack({ url: proxy.url });
      await t.sql.query(`INSERT INTO write_back_entries (key, value, version) VALUES ('stored', '{"from":"table"}', 1)`);
      expect(await t.service.get('warm-up')).toBeUndefined();
      // Every pooled connection looks alive and resets on its next query (a failover, a NAT that forgot it).
      expect(proxy.resetOnNextSend()).toBeGreaterThan(0);
      const accepted = proxy.accepted;
      expect(await t.service.get('stored')).toEqual({ from: 'table' });
      expect(proxy.accepted).toBeGreaterThan(accepted);
      expect(t.service.stats().loads).toBe(2);
    } finally {
      await t?.close();
      t = undefined;
      await proxy.close();
    }
  });

  it('drains on shutdown: app.close() flushes every pending write', async () => {
    t = await startWriteBack({ autoFlush: true, flushIntervalMs: 600_000 });
    for (let i = 0; i < 500; i++) await t.service.set(`s${i}`, { i });
    await t.service.delete('s0');
    const log = vi.spyOn(Logger.prototype, 'log');
    await t.app.close();
    expect(log.mock.calls.some(([m]) => /Shutdown drain flushed 500 entries/.test(String(m)))).toBe(true);
    await expect(t.service.set('late', 1)).rejects.toThrow(/shutting down/);
    const rows = await tableRows(t.sql);
    expect(rows.size).toBe(499);
    expect(rows.has('s0')).toBe(false);
  });

  it.skipIf(isPglite())(`logs the exact number it could not drain within shutdownTimeoutMs (${NEEDS_SERVER})`, async () => {
    t = await startWriteBack({ shutdownTimeoutMs: 300 });
    for (let i = 0; i < 7; i++) await t.service.set(`stuck${i}`, i);
    const lock = await lockTable(t);
    const error = vi.spyOn(Logger.prototype, 'error');
    try {
      await t.app.close();
    } finally {
      await lock.release();
    }
    const messages = error.mock.calls.map(([m]) => String(m));
    expect(messages.some((m) => /could not flush 7 of 7 entries within shutdownTimeoutMs=300/.test(m))).toBe(true);
  });
});
