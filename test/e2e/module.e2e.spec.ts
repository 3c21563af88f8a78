import { Injectable, Module } from '@nestjs/common';
import { ConfigModule, ConfigService, registerAs } from '@nestjs/config';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { afterEach, describe, expect, it } from 'vitest';
import {
  InjectWriteBack,
  WRITE_BACK_ENTITIES,
  WriteBackConfigError,
  WriteBackHealthIndicator,
  WriteBackModule,
  WriteBackService,
  getWriteBackServiceToken,
  type WriteBackModuleOptions,
  type WriteBackOptionsFactory,
} from '../../src/write-back/index.js';
import { writeBackConfig } from '../../src/write-back/config.js';
import { connectSql, databaseUrl, freshSchema, tableRows, WRITE_BACK_MIGRATION_NAMES } from '../support/database.js';

type Closable = { close(): Promise<void> };

async function boot(imports: any[], providers: any[] = []) {
  const module = await Test.createTestingModule({ imports, providers }).compile();
  const app = module.createNestApplication({ logger: process.env.DEBUG_NEST ? undefined : ['error'] });
  await app.init();
  return app;
}

async function roundTrip(service: WriteBackService, schema: string, key = 'k'): Promise<void> {
  await service.set(key, { via: key });
  await service.flush();
  const sql = await connectSql(schema);
  try {
    expect((await tableRows(sql)).get(key)?.value).toEqual({ via: key });
  } finally {
    await sql.end();
  }
}

describe('WriteBackModule wiring', () => {
  const open: Closable[] = [];
  afterEach(async () => {
    while (open.length > 0) await open.pop()!.close();
  });

  it('forRootAsync with ConfigModule: imports + inject + useFactory', async () => {
    const schema = freshSchema();
    const config = registerAs('writeBack', () => ({ url: databaseUrl(), schema, autoFlush: false }));
    const app = await boot([
      WriteBackModule.forRootAsync({
        imports: [ConfigModule.forRoot({ ignoreEnvFile: true, load: [config] })],
        inject: [ConfigService],
        useFactory: (configService: ConfigService) => configService.getOrThrow<WriteBackModuleOptions>('writeBack'),
      }),
    ]);
    open.push(app);
    await roundTrip(app.get(WriteBackService), schema);
  });

  it('forRootAsync with registerAs(...).asProvider()', async () => {
    const schema = freshSchema();
    const config = registerAs('writeBackAs', (): WriteBackModuleOptions => ({ url: databaseUrl(), schema, autoFlush: false }));
    const app = await boot([ConfigModule.forRoot({ ignoreEnvFile: true }), WriteBackModule.forRootAsync(config.asProvider())]);
    open.push(app);
    await roundTrip(app.get(WriteBackService), schema);
  });

  it('forRootAsync(writeBackConfig.asProvider()) from nestjs-write-back/config reads WRITE_BACK_* and DATABASE_URL', async () => {
    const schema = freshSchema();
    const saved = { ...process.env };
    Object.assign(process.env, { DATABASE_URL: databaseUrl(), WRITE_BACK_SCHEMA: schema, WRITE_BACK_AUTO_FLUSH: 'false', WRITE_BACK_BATCH_SIZE: '7' });
    try {
      const app = await boot([ConfigModule.forRoot({ ignoreEnvFile: true }), WriteBackModule.forRootAsync(writeBackConfig.asProvider())]);
      open.push(app);
      const service = app.get(WriteBackService);
      expect(service.options).toMatchObject({ schema, autoFlush: false, batchSize: 7 });
      await roundTrip(service, schema);
    } finally {
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
      Object.assign(process.env, saved);
    }
  });

  it('forRootAsync with useClass and with useExisting', async () => {
    const schema = freshSchema();
    @Injectable()
    class OptionsFactory implements WriteBackOptionsFactory {
      createWriteBackOptions(): WriteBackModuleOptions {
        return { url: databaseUrl(), schema, autoFlush: false };
      }
    }
    const byClass = await boot([WriteBackModule.forRootAsync({ useClass: OptionsFactory })]);
    open.push(byClass);
    await roundTrip(byClass.get(WriteBackService), schema, 'useClass');

    @Module({ providers: [OptionsFactory], exports: [OptionsFactory] })
    class OptionsModule {}
    const byExisting = await boot([
      WriteBackModule.forRootAsync({ imports: [OptionsModule], useExisting: OptionsFactory }),
    ]);
    open.push(byExisting);
    await roundTrip(byExisting.get(WriteBackService), schema, 'useExisting');
  });

  it('uses a DataSource the application already has (TypeOrmModule) and leaves it open', async () => {
    const schema = freshSchema();
    const setup = await connectSql();
    await setup.query(`CREATE SCHEMA "${schema}"`);
    await setup.end();
    const app = await boot([
      TypeOrmModule.forRoot({ type: 'postgres', url: databaseUrl(), schema, entities: [...WRITE_BACK_ENTITIES] }),
      WriteBackModule.forRootAsync({
        inject: [DataSource],
        useFactory: (dataSource: DataSource) => ({ dataSource, autoFlush: false }),
      }),
    ]);
    const dataSource = app.get(DataSource);
    const service = app.get(WriteBackService);
    expect(service.dataSource).toBe(dataSource);
    await roundTrip(service, schema);
    // The module ran its migrations into its own table, not the app's.
    const migrations: { name: string }[] = await dataSource.query(`SELECT name FROM "${schema}".write_back_migrations`);
    expect(migrations.map((m) => m.name)).toEqual(WRITE_BACK_MIGRATION_NAMES);
    await app.close();
    // TypeOrmModule closes its DataSource itself; the write-back drain happened before.
    expect(dataSource.isInitialized).toBe(false);
  });

  it('works on an existing DataSource that does not list the module entities (its SQL names its own tables)', async () => {
    const schema = freshSchema();
    const dataSource = await new DataSource({ type: 'postgres', url: databaseUrl(), entities: [] }).initialize();
    try {
      const app = await boot([WriteBackModule.forRoot({ dataSource, schema, autoFlush: false })]);
      await roundTrip(app.get(WriteBackService), schema);
      await app.close();
      expect(dataSource.isInitialized).toBe(true);
    } finally {
      await dataSource.destroy();
    }
  });

  it('validates options at start with an error naming the option (sync and async paths)', async () => {
    await expect(boot([WriteBackModule.forRoot({ url: databaseUrl(), batchSize: 0 })])).rejects.toThrow(
      /Invalid write-back option "batchSize"/,
    );
    const error = await boot([
      WriteBackModule.forRootAsync({ useFactory: () => ({ url: databaseUrl(), backpressure: 'drop' as 'block' }) }),
    ]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WriteBackConfigError);
    expect((error as WriteBackConfigError).option).toBe('backpressure');
    await expect(boot([WriteBackModule.forRoot({ batchSize: 10 })])).rejects.toThrow(/"url"/);
  });

  it('runs named instances side by side, injected with @InjectWriteBack(name)', async () => {
    const first = freshSchema();
    const second = freshSchema();
    @Injectable()
    class TwoStores {
      constructor(
        readonly main: WriteBackService,
        @InjectWriteBack('audit') readonly audit: WriteBackService,
      ) {}
    }
    const app = await boot(
      [
        WriteBackModule.forRoot({ url: databaseUrl(), schema: first, autoFlush: false, isGlobal: true }),
        WriteBackModule.forRoot({ name: 'audit', url: databaseUrl(), schema: second, autoFlush: false, isGlobal: true }),
      ],
      [TwoStores],
    );
    open.push(app);
    const stores = app.get(TwoStores);
    expect(stores.main).not.toBe(stores.audit);
    expect(app.get(getWriteBackServiceToken('audit'))).toBe(stores.audit);
    await roundTrip(stores.main, first, 'main');
    await roundTrip(stores.audit, second, 'audit');
    expect(app.get(WriteBackHealthIndicator)).toBeInstanceOf(WriteBackHealthIndicator);
  });
});
