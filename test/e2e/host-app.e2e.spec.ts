import { Controller, Get, Injectable, Module, Param, type INestApplication } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { Interval, ScheduleModule, SchedulerRegistry } from '@nestjs/schedule';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { Column, DataSource, Entity, PrimaryColumn } from 'typeorm';
import { rm } from 'node:fs/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  InjectWriteBack,
  InjectWriteBackHealthIndicator,
  WRITE_BACK_ENTITIES,
  WriteBackClosedError,
  WriteBackConnectionError,
  WriteBackDeadLetterNotFoundError,
  WriteBackDuplicateInstanceError,
  WriteBackExceptionFilter,
  WriteBackFlushTimeoutError,
  WriteBackHealthIndicator,
  WriteBackInvalidKeyError,
  WriteBackModule,
  WriteBackOverloadedError,
  WriteBackService,
  getWriteBackHealthIndicatorToken,
  getWriteBackOptionsToken,
  getWriteBackServiceToken,
  writeBackOptionsFromEnv,
} from '../../src/write-back/index.js';
import { connectSql, databaseUrl, freshSchema, isPglite, NEEDS_SERVER } from '../support/database.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { until } from '../support/wait.js';

const logger = process.env.DEBUG_NEST ? undefined : (['error'] as const);

async function boot(imports: any[], extra: { providers?: any[]; controllers?: any[] } = {}): Promise<INestApplication> {
  const module = await Test.createTestingModule({ imports, providers: extra.providers ?? [], controllers: extra.controllers ?? [] }).compile();
  const app = module.createNestApplication({ logger: logger ? [...logger] : undefined });
  await app.init();
  return app;
}

/** The entries table of `schema`, as plain rows. */
async function rows(schema: string): Promise<Map<string, unknown>> {
  const sql = await connectSql();
  try {
    const result = await sql.query(`SELECT key, value FROM "${schema}".write_back_entries`);
    return new Map(result.rows.map((r: { key: string; value: unknown }) => [r.key, r.value]));
  } finally {
    await sql.end();
  }
}

/** A unique instance name per test: named instances get a schema of their own, `write_back_<name>`. */
let names = 0;
const instanceName = (prefix: string) => `${prefix}_${process.pid}_${Date.now().toString(36)}_${names++}`;

describe('a good citizen in the host application', () => {
  const open: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    vi.restoreAllMocks();
    while (open.length > 0) await open.pop()!.close();
  });

  it("leaves the app's own ScheduleModule alone: its @Interval is scheduled once, and the flush timer joins its registry", async () => {
    let ticks = 0;
    @Injectable()
    class AppJobs {
      @Interval('app-job', 60_000)
      tick(): void {
        ticks++;
      }
    }
    const intervals = vi.spyOn(globalThis, 'setInterval');
    const schema = freshSchema();
    const app = await boot([ScheduleModule.forRoot(), WriteBackModule.forRoot({ url: databaseUrl(), schema, flushIntervalMs: 20 })], {
      providers: [AppJobs],
    });
    open.push(app);
    // With a second ScheduleModule root (the module importing one of its own), two explorers each start it.
    expect(intervals.mock.calls.filter(([, ms]) => ms === 60_000)).toHaveLength(1);
    const registry = app.get(SchedulerRegistry);
    expect(registry.getIntervals()).toEqual(['app-job']);
    expect(registry.doesExist('timeout', 'write-back-flush:default')).toBe(true);
    expect(ticks).toBe(0);
    // And the timer flushes on its own.
    await app.get(WriteBackService).set('scheduled', { ok: true });
    await until(async () => (await rows(schema)).has('scheduled'), 10_000, 'the flush timer wrote the row');
  });

  it('flushes on its own timer in an app without ScheduleModule, started at bootstrap, not when built', async () => {
    const schema = freshSchema();
    const module = await Test.createTestingModule({
      imports: [WriteBackModule.forRoot({ url: databaseUrl(), schema, flushIntervalMs: 20 })],
    }).compile();
    const app = module.createNestApplication({ logger: logger ? [...logger] : undefined });
    open.push(app);
    const service = app.get(WriteBackService);
    expect(service.flushLoopStatus().running).toBe(false);
    await app.init();
    expect(service.flushLoopStatus().running).toBe(true);
    await service.set('timer', 1);
    await until(async () => (await rows(schema)).get('timer') === 1, 10_000, 'the flush timer wrote the row');
  });

  it('is global by default: a feature module that never imports it injects the service; isGlobal: false opts out', async () => {
    @Injectable()
    class Profiles {
      constructor(readonly cache: WriteBackService) {}
    }
    @Module({ providers: [Profiles], exports: [Profiles] })
    class ProfilesModule {}
    const schema = freshSchema();
    const app = await boot([WriteBackModule.forRoot({ url: databaseUrl(), schema, autoFlush: false }), ProfilesModule]);
    open.push(app);
    expect(app.get(Profiles).cache).toBe(app.get(WriteBackService));

    await expect(
      boot([WriteBackModule.forRoot({ url: databaseUrl(), schema, autoFlush: false, isGlobal: false }), ProfilesModule]),
    ).rejects.toThrow(/WriteBackService/);
  });

  it('refuses a second root of the same instance at start, naming the modules that import them', async () => {
    const schema = freshSchema();
    @Module({ imports: [WriteBackModule.forRoot({ url: databaseUrl(), schema, autoFlush: false, flushIntervalMs: 500 })] })
    class BillingModule {}
    const error = await boot([WriteBackModule.forRoot({ url: databaseUrl(), schema, autoFlush: false }), BillingModule]).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(WriteBackDuplicateInstanceError);
    expect((error as Error).message).toMatch(/instance "default"/);
    expect((error as Error).message).toMatch(/BillingModule/);
  });

  it('keeps named instances apart: own schema, own walDir, own health indicator; one key, two values', async () => {
    const a = instanceName('a');
    const b = instanceName('b');
    @Injectable()
    class Both {
      constructor(
        @InjectWriteBack(a) readonly first: WriteBackService,
        @InjectWriteBack(b) readonly second: WriteBackService,
        @InjectWriteBackHealthIndicator(b) readonly secondHealth: WriteBackHealthIndicator,
      ) {}
    }
    const app = await boot(
      [
        WriteBackModule.forRoot({ name: a, url: databaseUrl(), autoFlush: false }),
        WriteBackModule.forRoot({ name: b, url: databaseUrl(), autoFlush: false }),
      ],
      { providers: [Both] },
    );
    open.push(app);
    const both = app.get(Both);
    expect(both.first.options.schema).toBe(`write_back_${a}`);
    expect(both.second.options.walDir).not.toBe(both.first.options.walDir);
    expect(both.second.options.walDir).toMatch(new RegExp(`${b}$`));
    expect(app.get(getWriteBackHealthIndicatorToken(b))).toBe(both.secondHealth);
    expect(app.get(getWriteBackHealthIndicatorToken(a))).not.toBe(both.secondHealth);

    await both.first.set('same-key', 'from a');
    await both.second.set('same-key', 'from b');
    await both.first.flush();
    await both.second.flush();
    expect((await rows(`write_back_${a}`)).get('same-key')).toBe('from a');
    expect((await rows(`write_back_${b}`)).get('same-key')).toBe('from b');
    await both.second.delete('same-key');
    await both.second.flush();
    expect(await both.first.get('same-key')).toBe('from a');
  });

  it('names the instance holding a walDir when a second one asks for it', async () => {
    const walDir = `/tmp/write-back-shared-wal-${process.pid}-${names++}`;
    const a = instanceName('wal_a');
    const b = instanceName('wal_b');
    try {
      const error = await boot([
        WriteBackModule.forRoot({ name: a, url: databaseUrl(), autoFlush: false, durability: 'wal-sync', walDir }),
        WriteBackModule.forRoot({ name: b, url: databaseUrl(), autoFlush: false, durability: 'wal-sync', walDir }),
      ]).catch((e: unknown) => e);
      // The two are built concurrently: whichever opened the log first is named by the other's error.
      expect((error as Error).message).toMatch(new RegExp(`in use by write-back instance "(${a}|${b})" of this process`));
    } finally {
      await rm(walDir, { recursive: true, force: true });
    }
  });

  it('exports a filter answering 400 / 404 / 503 + Retry-After / 504 with one body shape', async () => {
    const errors: Record<string, Error> = {
      invalid: new WriteBackInvalidKeyError('Key must be a non-empty string.'),
      missing: new WriteBackDeadLetterNotFoundError('7'),
      full: new WriteBackOverloadedError(10, 10, 'reject'),
      closing: new WriteBackClosedError('set'),
      slow: new WriteBackFlushTimeoutError(3, 100),
    };
    @Controller('fail')
    class FailController {
      @Get(':kind')
      fail(@Param('kind') kind: string): never {
        throw errors[kind];
      }
    }
    const module = await Test.createTestingModule({
      controllers: [FailController],
      providers: [{ provide: APP_FILTER, useClass: WriteBackExceptionFilter }],
    }).compile();
    const app = module.createNestApplication({ logger: false });
    open.push(app);
    await app.listen(0, '127.0.0.1');
    const base = await app.getUrl();
    const expected = { invalid: 400, missing: 404, full: 503, closing: 503, slow: 504 };
    for (const [kind, status] of Object.entries(expected)) {
      const response = await fetch(`${base}/fail/${kind}`);
      expect(response.status, kind).toBe(status);
      expect(await response.json(), kind).toEqual({ statusCode: status, error: errors[kind].name, message: errors[kind].message });
      expect(response.headers.get('retry-after'), kind).toBe(status === 503 ? '1' : null);
    }
  });

  it('lets a test override the service with no database and no valid options', async () => {
    @Injectable()
    class Profiles {
      constructor(readonly cache: WriteBackService) {}
    }
    const fake = { get: async () => 'fake', options: undefined };
    const module = await Test.createTestingModule({
      imports: [WriteBackModule.forRoot({ url: process.env.NO_SUCH_VARIABLE as string })],
      providers: [Profiles],
    })
      .overrideProvider(WriteBackService)
      .useValue(fake)
      .compile();
    const app = module.createNestApplication({ logger: false });
    await app.init();
    open.push(app);
    expect(app.get(Profiles).cache).toBe(fake);
    expect(await app.get(Profiles).cache.get('k')).toBe('fake');
    expect(app.get(getWriteBackOptionsToken(), { strict: false })).toBeUndefined();
  });

  it('checks options when the service is built, naming the option', async () => {
    await expect(boot([WriteBackModule.forRoot({ url: databaseUrl(), batchSize: 0 })])).rejects.toThrow(/"batchSize"/);
    expect(() => WriteBackModule.forRoot({ name: 'no spaces', url: databaseUrl() })).toThrow(/"name"/);
  });

  it.skipIf(isPglite())('retries the first connection while Postgres is not up yet, then starts', async () => {
    const proxy = await TcpProxy.start(databaseUrl());
    open.push(proxy);
    proxy.refuse();
    const schema = freshSchema();
    const started = boot([WriteBackModule.forRoot({ url: proxy.url, schema, autoFlush: false, retryAttempts: 100, retryDelay: 20 })]);
    await until(() => proxy.refused >= 3, 10_000, 'three refused attempts');
    proxy.restore();
    const app = await started;
    open.push(app);
    await app.get(WriteBackService).set('late', true);
    await app.get(WriteBackService).flush();
    expect((await rows(schema)).get('late')).toBe(true);
  });

  it('gives up after retryAttempts with an error naming host, port and database, never the password', async () => {
    const proxy = await TcpProxy.start(databaseUrl());
    open.push(proxy);
    proxy.refuse();
    const url = new URL(proxy.url);
    url.username = 'someone';
    url.password = 'hunter2-secret';
    url.pathname = '/app_db';
    const error = await boot([WriteBackModule.forRoot({ url: url.toString(), retryAttempts: 2, retryDelay: 1 })]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WriteBackConnectionError);
    const message = (error as Error).message;
    expect(message).toContain(`127.0.0.1:${proxy.port}`);
    expect(message).toContain('database "app_db"');
    expect(message).toContain('attempt 3 of 3');
    expect(message).not.toContain('hunter2-secret');
    expect(proxy.refused).toBe(3);
  });

  it('names host and port when a server accepts and never answers', async () => {
    const proxy = await TcpProxy.start(databaseUrl());
    open.push(proxy);
    proxy.blackhole();
    const error = await boot([
      WriteBackModule.forRoot({
        url: proxy.url,
        retryAttempts: 0,
        connectionOptions: { extra: { connectionTimeoutMillis: 200 } },
      }),
    ]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WriteBackConnectionError);
    expect((error as Error).message).toMatch(new RegExp(`127\\.0\\.0\\.1:${proxy.port}.*timeout`, 'i'));
  });

  it('reads an empty variable as unset (DATABASE_URL= falls through; WRITE_BACK_URL= leaves DATABASE_URL)', () => {
    expect(writeBackOptionsFromEnv({ DATABASE_URL: '', WRITE_BACK_BATCH_SIZE: ' ' })).toEqual({});
    expect(writeBackOptionsFromEnv({ WRITE_BACK_URL: '', DATABASE_URL: 'postgres://h/db' })).toEqual({ url: 'postgres://h/db' });
  });

  it.skipIf(isPglite())("is left alone by the app's TypeORM synchronize: true (" + NEEDS_SERVER + ')', async () => {
    @Entity({ name: 'app_users' })
    class AppUser {
      @PrimaryColumn({ type: 'int' })
      id!: number;

      @Column({ type: 'text' })
      name!: string;
    }
    const schema = freshSchema();
    const setup = await connectSql();
    await setup.query(`CREATE SCHEMA "${schema}"`);
    await setup.end();
    const app = () =>
      boot([
        TypeOrmModule.forRoot({ type: 'postgres', url: databaseUrl(), schema, synchronize: true, entities: [...WRITE_BACK_ENTITIES, AppUser] }),
        WriteBackModule.forRootAsync({ inject: [DataSource], useFactory: (dataSource: DataSource) => ({ dataSource, autoFlush: false }) }),
      ]);
    const schemaState = async () => {
      const sql = await connectSql();
      try {
        const columns = await sql.query(
          `SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns
           WHERE table_schema = $1 AND table_name LIKE 'write_back_%' ORDER BY table_name, column_name`,
          [schema],
        );
        const checks = await sql.query(
          `SELECT conname, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
           WHERE n.nspname = $1 ORDER BY conname`,
          [schema],
        );
        return { columns: columns.rows, checks: checks.rows };
      } finally {
        await sql.end();
      }
    };
    const first = await app();
    await first.close();
    const before = await schemaState();
    expect(before.columns.find((c) => c.table_name === 'write_back_entries' && c.column_name === 'updated_at')?.column_default).toBe('now()');
    expect(before.checks.some((c) => /operation/.test(c.def))).toBe(true);
    // The second start synchronizes against existing tables: nothing of the module's may change.
    const second = await app();
    open.push(second);
    expect(await schemaState()).toEqual(before);
    await second.get(WriteBackService).set('k', 1);
    await second.get(WriteBackService).flush();
    expect((await rows(schema)).get('k')).toBe(1);
  });
});
