// The README's "Testing your app" example, run as an app's own spec would run it: no Postgres server involved.
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WriteBackService } from '../../src/write-back/index.js';
import { WriteBackTestingModule } from '../../src/write-back/testing.js';
import { ProfilesModule, ProfilesService } from '../fixtures/profiles.module.js';

describe('WriteBackTestingModule (nestjs-write-back/testing)', () => {
  let app: INestApplication;

  beforeEach(async () => {
    const module = await Test.createTestingModule({ imports: [WriteBackTestingModule.forRoot(), ProfilesModule] }).compile();
    app = await module.createNestApplication({ logger: ['error'] }).init();
  }, 60_000);

  afterEach(() => app.close());

  it('renames a profile and writes it behind', async () => {
    const cache = app.get(WriteBackService);
    await cache.set('profile:1', { name: 'Ada', plan: 'free' });
    await app.get(ProfilesService).rename('1', 'Ada L.');
    await cache.flush();
    const rows = await cache.dataSource.query(`SELECT value FROM write_back_entries WHERE key = 'profile:1'`);
    expect(rows[0].value).toEqual({ name: 'Ada L.', plan: 'free' });
  });

  it('runs on an embedded Postgres of its own: a fresh, empty database per test module, timer off', async () => {
    const cache = app.get(WriteBackService);
    expect(cache.options.url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres/);
    expect(cache.options.autoFlush).toBe(false);
    expect(await cache.dataSource.query('SELECT count(*)::int AS n FROM write_back_entries')).toEqual([{ n: 0 }]);
    const [{ version }] = await cache.dataSource.query('SELECT version()');
    expect(version).toMatch(/PostgreSQL/);
  });
});
