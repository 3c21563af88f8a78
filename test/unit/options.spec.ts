import type { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { WriteBackConfigError } from '../../src/write-back/write-back.errors.js';
import {
  WRITE_BACK_DEFAULTS,
  WRITE_BACK_OPTION_NAMES,
  resolveWriteBackOptions,
  writeBackEnvName,
  writeBackOptionsFromEnv,
  type WriteBackModuleOptions,
} from '../../src/write-back/write-back.options.js';

const URL = 'postgres://user:pw@localhost:5432/db';
const fakeDataSource = { query: async () => [] } as unknown as DataSource;

function configError(options: unknown): WriteBackConfigError {
  try {
    resolveWriteBackOptions(options as WriteBackModuleOptions);
  } catch (error) {
    expect(error).toBeInstanceOf(WriteBackConfigError);
    return error as WriteBackConfigError;
  }
  throw new Error(`expected ${JSON.stringify(options)} to be rejected`);
}

describe('resolveWriteBackOptions', () => {
  it('fills in every default', () => {
    const resolved = resolveWriteBackOptions({ url: URL });
    expect(resolved).toMatchObject(WRITE_BACK_DEFAULTS);
    expect(resolved).toMatchObject({
      url: URL,
      flushIntervalMs: 1000,
      batchSize: 1000,
      flushConcurrency: 2,
      maxEntries: 100_000,
      maxDirtyEntries: 100_000,
      backpressure: 'block',
      maxRetries: 3,
      durability: 'none',
      autoFlush: true,
      coalesceHotKeys: true,
      runMigrations: true,
      poolSize: 6,
      dirtyHighWatermark: 80_000,
    });
  });

  it('keeps given values and treats undefined as "use the default"', () => {
    const resolved = resolveWriteBackOptions({ url: URL, batchSize: 10, maxRetries: undefined, backpressure: 'reject' });
    expect(resolved.batchSize).toBe(10);
    expect(resolved.maxRetries).toBe(3);
    expect(resolved.backpressure).toBe('reject');
  });

  it('defaults dirtyHighWatermark to 80% of maxDirtyEntries and poolSize to flushConcurrency + 4', () => {
    const resolved = resolveWriteBackOptions({ url: URL, maxDirtyEntries: 1000, flushConcurrency: 8 });
    expect(resolved.dirtyHighWatermark).toBe(800);
    expect(resolved.poolSize).toBe(12);
    expect(resolveWriteBackOptions({ url: URL, maxDirtyEntries: 1 }).dirtyHighWatermark).toBe(1);
    expect(resolveWriteBackOptions({ url: URL, maxDirtyEntries: 1000, dirtyHighWatermark: 5 }).dirtyHighWatermark).toBe(5);
  });

  it('defaults flushScaleUpLagMs to flushIntervalMs, and takes 0 (always flushConcurrency batches at once)', () => {
    expect(resolveWriteBackOptions({ url: URL, flushIntervalMs: 250 }).flushScaleUpLagMs).toBe(250);
    expect(resolveWriteBackOptions({ url: URL, flushIntervalMs: 250, flushScaleUpLagMs: 0 }).flushScaleUpLagMs).toBe(0);
    expect(() => resolveWriteBackOptions({ url: URL, flushScaleUpLagMs: -1 })).toThrow(/flushScaleUpLagMs/);
  });

  it('accepts an existing DataSource instead of a url', () => {
    const resolved = resolveWriteBackOptions({ dataSource: fakeDataSource });
    expect(resolved.dataSource).toBe(fakeDataSource);
    expect(resolved.url).toBeUndefined();
  });

  it('does not change the object it was given', () => {
    const options = { url: URL, batchSize: 5 };
    resolveWriteBackOptions(options);
    expect(options).toEqual({ url: URL, batchSize: 5 });
  });

  it.each([
    ['batchSize', { batchSize: 0 }],
    ['batchSize', { batchSize: 50_001 }],
    ['flushConcurrency', { flushConcurrency: 1.5 }],
    ['flushConcurrency', { flushConcurrency: '2' }],
    ['flushIntervalMs', { flushIntervalMs: -1 }],
    ['flushIntervalMs', { flushIntervalMs: Number.NaN }],
    ['maxEntries', { maxEntries: 0 }],
    ['maxDirtyEntries', { maxDirtyEntries: Number.POSITIVE_INFINITY }],
    ['maxRetries', { maxRetries: 0 }],
    ['backpressure', { backpressure: 'x' }],
    ['durability', { durability: 'fsync' }],
    ['autoFlush', { autoFlush: 'yes' }],
    ['runMigrations', { runMigrations: 1 }],
    ['coalesceHotKeys', { coalesceHotKeys: 'false' }],
    ['walDir', { walDir: '' }],
    ['walSyncIntervalMs', { walSyncIntervalMs: 0 }],
    ['walSegmentBytes', { walSegmentBytes: 0 }],
    ['walCorruption', { walCorruption: 'ignore' }],
    ['schema', { schema: 'bad schema; drop table x' }],
    ['retryMaxDelayMs', { retryBaseDelayMs: 1000, retryMaxDelayMs: 999 }],
    ['poolSize', { flushConcurrency: 4, poolSize: 3 }],
    ['bogusOption', { bogusOption: 1 }],
  ])('rejects a bad %s with an error naming it', (name, bad) => {
    const error = configError({ url: URL, ...bad });
    expect(error.option).toBe(name);
    expect(error.message).toContain(`"${name}"`);
  });

  it('names the option in the message of an unknown option', () => {
    expect(configError({ url: URL, flushIntervalMS: 10 }).message).toMatch(/"flushIntervalMS".*unknown option/);
  });

  it('rejects both url and dataSource, and neither', () => {
    const both = configError({ url: URL, dataSource: fakeDataSource });
    expect(both.option).toBe('url');
    expect(both.message).toContain('dataSource');
    const neither = configError({});
    expect(neither.option).toBe('url');
    expect(neither.message).toContain('dataSource');
  });

  it('rejects a url that is not a postgres:// connection string', () => {
    expect(configError({ url: 'mysql://localhost/db' }).option).toBe('url');
    expect(resolveWriteBackOptions({ url: 'postgresql://localhost/db' }).url).toBe('postgresql://localhost/db');
  });

  it('rejects a dataSource that is not a DataSource', () => {
    expect(configError({ dataSource: {} }).option).toBe('dataSource');
  });

  it('rejects a non-object', () => {
    expect(configError(null).option).toBe('options');
  });

  it('accepts every durability mode', () => {
    for (const durability of ['none', 'wal-async', 'wal-sync'] as const) {
      expect(resolveWriteBackOptions({ url: URL, durability }).durability).toBe(durability);
    }
  });

  it('accepts the bounds themselves', () => {
    expect(() =>
      resolveWriteBackOptions({ url: URL, batchSize: 1, flushConcurrency: 64, retryBaseDelayMs: 5, retryMaxDelayMs: 5 }),
    ).not.toThrow();
  });
});

describe('writeBackEnvName', () => {
  it('turns an option name into WRITE_BACK_ + SCREAMING_SNAKE_CASE', () => {
    expect(writeBackEnvName('flushIntervalMs')).toBe('WRITE_BACK_FLUSH_INTERVAL_MS');
    expect(writeBackEnvName('maxDirtyEntries')).toBe('WRITE_BACK_MAX_DIRTY_ENTRIES');
    expect(writeBackEnvName('url')).toBe('WRITE_BACK_URL');
  });

  it('names every option distinctly', () => {
    const names = WRITE_BACK_OPTION_NAMES.map(writeBackEnvName);
    expect(new Set(names).size).toBe(names.length);
  });
});

describe('writeBackOptionsFromEnv', () => {
  it('parses numbers, booleans, enums and strings; leaves unset and blank variables out', () => {
    const options = writeBackOptionsFromEnv({
      WRITE_BACK_URL: URL,
      WRITE_BACK_FLUSH_INTERVAL_MS: ' 250 ',
      WRITE_BACK_BATCH_SIZE: '500',
      WRITE_BACK_AUTO_FLUSH: 'false',
      WRITE_BACK_RUN_MIGRATIONS: '1',
      WRITE_BACK_COALESCE_HOT_KEYS: 'false',
      WRITE_BACK_BACKPRESSURE: 'reject',
      WRITE_BACK_DURABILITY: 'none',
      WRITE_BACK_WAL_DIR: '/tmp/wal',
      WRITE_BACK_MAX_RETRIES: '',
      UNRELATED: 'x',
    });
    expect(options).toEqual({
      url: URL,
      flushIntervalMs: 250,
      batchSize: 500,
      autoFlush: false,
      runMigrations: true,
      coalesceHotKeys: false,
      backpressure: 'reject',
      durability: 'none',
      walDir: '/tmp/wal',
    });
    expect(resolveWriteBackOptions(options).flushIntervalMs).toBe(250);
  });

  it('booleans accept true/false/1/0 in any case', () => {
    expect(writeBackOptionsFromEnv({ WRITE_BACK_AUTO_FLUSH: 'TRUE' }).autoFlush).toBe(true);
    expect(writeBackOptionsFromEnv({ WRITE_BACK_AUTO_FLUSH: '0' }).autoFlush).toBe(false);
  });

  it('reads DATABASE_URL as url, WRITE_BACK_URL winning', () => {
    expect(writeBackOptionsFromEnv({ DATABASE_URL: URL })).toEqual({ url: URL });
    expect(writeBackOptionsFromEnv({ DATABASE_URL: URL, WRITE_BACK_URL: 'postgres://other/db' }).url).toBe(
      'postgres://other/db',
    );
  });

  it.each([
    ['WRITE_BACK_FLUSH_INTERVAL_MS', '1s'],
    ['WRITE_BACK_BATCH_SIZE', '12abc'],
    ['WRITE_BACK_MAX_ENTRIES', '1e5'],
    ['WRITE_BACK_FLUSH_CONCURRENCY', '1.5'],
    ['WRITE_BACK_AUTO_FLUSH', 'yes'],
  ])('a malformed %s=%s throws naming the variable', (variable, value) => {
    let error: unknown;
    try {
      writeBackOptionsFromEnv({ [variable]: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(WriteBackConfigError);
    expect((error as WriteBackConfigError).option).toBe(variable);
    expect((error as Error).message).toContain(variable);
  });

  it('an out-of-range value from env is caught by validation, naming the option', () => {
    const error = configError(writeBackOptionsFromEnv({ DATABASE_URL: URL, WRITE_BACK_BATCH_SIZE: '0' }));
    expect(error.option).toBe('batchSize');
  });
});
