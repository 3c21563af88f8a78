import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectSql, databaseUrl, freshSchema, isPglite, tableRows } from '../support/database.js';
import { freePort } from '../support/ports.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { tempDir } from '../support/temp-dir.js';
import { until } from '../support/wait.js';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
};

/** The version of a package installed in the repository. */
const repoVersion = (name: string): string =>
  (JSON.parse(readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;

const optionalPeers = Object.entries(manifest.peerDependenciesMeta ?? {})
  .filter(([, meta]) => meta.optional)
  .map(([name]) => name);
/** Optional peers a consumer app here does not install: the library must load and run without them. */
const NOT_INSTALLED = ['@nestjs/terminus', 'prom-client', '@nestjs/config'];
/**
 * What a consumer installs: the required peers, and what the app itself uses: an HTTP platform, its own
 * ScheduleModule, @nestjs/testing and the embedded Postgres of `nestjs-write-back/testing` for its tests.
 */
const appPackages = (typeormVersion: string) =>
  [
    ...Object.keys(manifest.peerDependencies).filter((name) => !optionalPeers.includes(name) && name !== 'typeorm'),
    '@nestjs/platform-express',
    '@nestjs/schedule',
    '@nestjs/testing',
    '@electric-sql/pglite',
    '@electric-sql/pglite-socket',
    'reflect-metadata',
    'rxjs',
    '@types/node',
  ]
    .map((name) => `${name}@${repoVersion(name)}`)
    .concat(`typeorm@${typeormVersion}`);

/** The consumer app, as a user writes it from the README: one root, a feature module, its own schedule. */
const APP_FILES: Record<string, string> = {
  'src/jobs.ts': `import { Injectable } from '@nestjs/common';
import { Interval } from '@nestjs/schedule';

export const counters = { ticks: 0, scheduled: 0 };

/** Counts the intervals of 100 ms the process schedules: the app's own @Interval must be scheduled once. */
export function countScheduledIntervals(): void {
  const original = globalThis.setInterval;
  globalThis.setInterval = ((handler: () => void, ms?: number) => {
    if (ms === 100) counters.scheduled++;
    return original(handler, ms);
  }) as typeof setInterval;
}

@Injectable()
export class Jobs {
  @Interval(100)
  tick(): void {
    counters.ticks++;
  }
}
`,
  'src/profiles/profiles.service.ts': `import { Injectable } from '@nestjs/common';
import { InjectWriteBack, WriteBackService } from 'nestjs-write-back';

export interface Profile {
  name: string;
  plan?: string;
}

@Injectable()
export class ProfilesService {
  constructor(
    private readonly cache: WriteBackService,
    @InjectWriteBack('audit') private readonly audit: WriteBackService,
  ) {}

  find(id: string): Promise<Profile | undefined> {
    return this.cache.get<Profile>('profile:' + id);
  }

  async save(id: string, profile: Profile): Promise<void> {
    await this.cache.set('profile:' + id, profile);
  }

  async record(key: string, entry: unknown): Promise<void> {
    await this.audit.set(key, entry);
  }

  findAudit(key: string): Promise<unknown> {
    return this.audit.get(key);
  }

  flush() {
    return this.cache.flush();
  }
}
`,
  'src/profiles/profiles.controller.ts': `import { Body, Controller, Get, HttpCode, NotFoundException, Param, Post, Put } from '@nestjs/common';
import { ProfilesService, type Profile } from './profiles.service.js';
import { counters } from '../jobs.js';

@Controller()
export class ProfilesController {
  constructor(private readonly profiles: ProfilesService) {}

  @Put('profiles/:id')
  @HttpCode(204)
  save(@Param('id') id: string, @Body() body: Profile): Promise<void> {
    return this.profiles.save(id, body);
  }

  @Get('profiles/:id')
  async find(@Param('id') id: string): Promise<Profile> {
    const profile = await this.profiles.find(id);
    if (profile === undefined) throw new NotFoundException();
    return profile;
  }

  @Post('flush')
  @HttpCode(200)
  flush() {
    return this.profiles.flush();
  }

  @Put('audit/:key')
  @HttpCode(204)
  record(@Param('key') key: string, @Body() body: unknown): Promise<void> {
    return this.profiles.record(key, body);
  }

  @Get('audit/:key')
  findAudit(@Param('key') key: string): Promise<unknown> {
    return this.profiles.findAudit(key);
  }

  @Get('ticks')
  ticks() {
    return counters;
  }
}
`,
  'src/profiles/profiles.module.ts': `import { Module } from '@nestjs/common';
import { ProfilesController } from './profiles.controller.js';
import { ProfilesService } from './profiles.service.js';

/** A feature module: it does not import WriteBackModule (the root is global). */
@Module({ providers: [ProfilesService], controllers: [ProfilesController], exports: [ProfilesService] })
export class ProfilesModule {}
`,
  'src/app.module.ts': `import { Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { WriteBackExceptionFilter, WriteBackModule } from 'nestjs-write-back';
import { Jobs } from './jobs.js';
import { ProfilesModule } from './profiles/profiles.module.js';

@Module({
  imports: [
    ScheduleModule.forRoot(),
    WriteBackModule.forRoot({
      url: process.env.DATABASE_URL,
      schema: process.env.SCHEMA,
      flushIntervalMs: 60_000,
      retryAttempts: Number(process.env.RETRY_ATTEMPTS ?? 9),
      retryDelay: 100,
    }),
    WriteBackModule.forRoot({
      name: 'audit',
      url: process.env.DATABASE_URL,
      autoFlush: false,
      maxDirtyEntries: 2,
      backpressure: 'reject',
      retryAttempts: Number(process.env.RETRY_ATTEMPTS ?? 9),
      retryDelay: 100,
    }),
    ProfilesModule,
  ],
  providers: [Jobs, { provide: APP_FILTER, useClass: WriteBackExceptionFilter }],
})
export class AppModule {}
`,
  'src/main.ts': `import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { countScheduledIntervals } from './jobs.js';

async function bootstrap(): Promise<void> {
  countScheduledIntervals();
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn', 'log'] });
  app.enableShutdownHooks();
  await app.listen(Number(process.env.PORT), '127.0.0.1');
  console.log('consumer listening');
}

bootstrap().catch((error: unknown) => {
  console.error('start-up failed: ' + (error instanceof Error ? error.message : String(error)));
  process.exit(1);
});
`,
  // The app's own tests, without a Postgres server: the service replaced, then the real module on PGlite.
  'src/profiles/profiles.check.ts': `import 'reflect-metadata';
import assert from 'node:assert/strict';
import { Test } from '@nestjs/testing';
import { WriteBackService, getWriteBackServiceToken } from 'nestjs-write-back';
import { WriteBackTestingModule } from 'nestjs-write-back/testing';
import { AppModule } from '../app.module.js';
import { ProfilesModule } from './profiles.module.js';
import { ProfilesService } from './profiles.service.js';

async function withOverride(): Promise<void> {
  const stored = new Map<string, unknown>();
  const fake = {
    get: async (key: string) => stored.get(key),
    set: async (key: string, value: unknown) => void stored.set(key, value),
  };
  const module = await Test.createTestingModule({ imports: [AppModule] })
    .overrideProvider(WriteBackService)
    .useValue(fake)
    .overrideProvider(getWriteBackServiceToken('audit'))
    .useValue(fake)
    .compile();
  const app = await module.createNestApplication({ logger: false }).init();
  await app.get(ProfilesService).save('1', { name: 'Ada' });
  assert.deepEqual(stored.get('profile:1'), { name: 'Ada' });
  await app.close();
}

async function withTestingModule(): Promise<void> {
  const module = await Test.createTestingModule({
    imports: [WriteBackTestingModule.forRoot(), WriteBackTestingModule.forRoot({ name: 'audit' }), ProfilesModule],
  }).compile();
  const app = await module.createNestApplication({ logger: false }).init();
  const profiles = app.get(ProfilesService);
  await profiles.save('2', { name: 'Grace', plan: 'pro' });
  await profiles.record('profile:2', 'audit entry');
  const report = await profiles.flush();
  assert.equal(report.committed, 1);
  const rows = await app.get(WriteBackService).dataSource.query('SELECT value FROM write_back_entries WHERE key = $1', ['profile:2']);
  assert.deepEqual(rows[0].value, { name: 'Grace', plan: 'pro' });
  assert.equal(await profiles.findAudit('profile:2'), 'audit entry');
  await app.close();
}

withOverride()
  .then(withTestingModule)
  .then(() => console.log('consumer checks passed'))
  .catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
`,
};

interface Flavour {
  label: string;
  /** The consumer's package.json `type`. */
  type: 'module' | 'commonjs';
  module: 'nodenext' | 'commonjs';
  typeorm: string;
}

/**
 * ESM on the TypeORM this repository tests; CommonJS (`module: commonjs`, the Nest CLI's default) on the lowest
 * TypeORM of the peer range, so both ends of the claim are run.
 */
const FLAVOURS: Flavour[] = [
  { label: 'ESM app (module nodenext), typeorm ' + repoVersion('typeorm'), type: 'module', module: 'nodenext', typeorm: repoVersion('typeorm') },
  { label: 'CommonJS app (module commonjs), typeorm 1.0.0', type: 'commonjs', module: 'commonjs', typeorm: '1.0.0' },
];

const tsconfigOf = (flavour: Flavour) => ({
  compilerOptions: {
    target: 'ES2023',
    lib: ['ES2023'],
    module: flavour.module,
    strict: true,
    experimentalDecorators: true,
    emitDecoratorMetadata: true,
    esModuleInterop: true,
    skipLibCheck: true,
    outDir: 'dist',
    rootDir: 'src',
    types: ['node'],
  },
  include: ['src'],
});

/** npm with a clean environment: no npm_* variables of the `npm test` that may have started us. */
function npmEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
}

/** The environment of a consumer process: nothing of ours that could configure it by accident. */
function appEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('WRITE_BACK_') && name !== 'DATABASE_URL'),
  );
  return { ...env, ...extra };
}

interface Consumer {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | string>;
}

function startConsumer(dir: string, env: Record<string, string>): Consumer {
  const child = spawn(process.execPath, ['dist/main.js'], { cwd: dir, env: appEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return { child, output: () => output, exited };
}

/** Waits for `text` in the app's output; fails at once if the app exits first. */
async function waitForOutput(consumer: Consumer, text: string, timeoutMs = 60_000): Promise<void> {
  const seen = () => {
    if (consumer.child.exitCode !== null) throw new Error(`the app exited before "${text}":\n${consumer.output()}`);
    return consumer.output().includes(text);
  };
  await until(seen, timeoutMs, () => `"${text}" from the app:\n${consumer.output()}`);
}

/**
 * Copies the repository as a fresh clone has it (tracked files, plus new ones not ignored; no dist/), with the
 * repository's node_modules linked in, so `npm pack` must build the package itself (`prepack`).
 */
async function freshClone(into: string): Promise<string> {
  const { stdout } = await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
  const clone = path.join(into, 'clone');
  for (const file of stdout.split('\0').filter(Boolean)) {
    // Deleted but not yet staged, or not a plain file (a node_modules symlink of a work tree): not in a clone.
    if (!existsSync(path.join(ROOT, file)) || !lstatSync(path.join(ROOT, file)).isFile()) continue;
    await mkdir(path.dirname(path.join(clone, file)), { recursive: true });
    await copyFile(path.join(ROOT, file), path.join(clone, file));
  }
  await symlink(path.join(ROOT, 'node_modules'), path.join(clone, 'node_modules'), 'dir');
  return clone;
}

describe('the packed library in fresh Nest apps (ESM and CommonJS), following the README', () => {
  const children: ChildProcess[] = [];
  let work: string;
  let tarball: string;
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  });

  beforeAll(async () => {
    work = await tempDir('write-back-consumer-');
    const clone = await freshClone(work);
    expect(existsSync(path.join(clone, 'dist'))).toBe(false);
    // With scripts: prepack builds dist/ in the clone.
    const packed = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: clone, env: npmEnv(), maxBuffer: 64 * 1024 * 1024 });
    const json = packed.stdout.slice(packed.stdout.indexOf('['));
    const [{ filename, files }] = JSON.parse(json) as [{ filename: string; files: { path: string }[] }];
    tarball = path.join(work, filename);
    const paths = files.map((f) => f.path);
    for (const entry of ['index', 'config', 'testing']) expect(paths).toContain(`dist/write-back/${entry}.js`);
    expect(paths.filter((f) => /^dist\/(main|app\.module)\.js$|^src\/|^test\//.test(f))).toEqual([]);
  }, 240_000);

  for (const flavour of FLAVOURS) {
    it(`${flavour.label}: one root, a feature module, named instances, its own @Interval, the filter, its own tests, a late database`, async (context) => {
      const app = path.join(work, flavour.type);
      await mkdir(app, { recursive: true });
      await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: `consumer-${flavour.type}`, private: true, type: flavour.type }, null, 2));
      await writeFile(path.join(app, 'tsconfig.json'), JSON.stringify(tsconfigOf(flavour), null, 2));
      for (const [file, source] of Object.entries(APP_FILES)) {
        await mkdir(path.dirname(path.join(app, file)), { recursive: true });
        await writeFile(path.join(app, file), source);
      }
      const install = ['install', '--no-audit', '--no-fund', '--ignore-scripts', tarball, ...appPackages(flavour.typeorm)];
      const failures: string[] = [];
      let installed = false;
      for (const mode of ['--offline', '--prefer-offline']) {
        try {
          await run('npm', [...install, mode], { cwd: app, env: npmEnv(), timeout: 180_000 });
          installed = true;
          break;
        } catch (error) {
          failures.push(`${mode}: ${(error as { stderr?: string }).stderr?.split('\n').find((l) => /error/i.test(l)) ?? String(error)}`);
        }
      }
      if (!installed) {
        context.skip(`npm could not install the tarball and its peers, neither offline nor online (${failures.join('; ')})`);
        return;
      }
      for (const name of NOT_INSTALLED) expect(existsSync(path.join(app, 'node_modules', name)), `${name} not installed`).toBe(false);
      expect(repoVersionIn(app, 'typeorm')).toBe(flavour.typeorm);
      try {
        await run(path.join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], { cwd: app });
      } catch (error) {
        throw new Error(`the app does not compile against the package:\n${(error as { stdout?: string }).stdout}`);
      }
      const compiled = readFileSync(path.join(app, 'dist/main.js'), 'utf8');
      expect(compiled.includes('require('), 'CommonJS output uses require').toBe(flavour.type === 'commonjs');

      // Its own tests: an override, then the real module on embedded PGlite; no Postgres server anywhere.
      const checks = await run(process.execPath, ['dist/profiles/profiles.check.js'], { cwd: app, env: appEnv({}), timeout: 120_000 });
      expect(checks.stdout).toContain('consumer checks passed');

      if (isPglite()) return; // the rest needs a server that can start late
      const proxy = await TcpProxy.start(databaseUrl());
      const schema = freshSchema();
      const port = await freePort();
      proxy.refuse();
      const consumer = startConsumer(app, { DATABASE_URL: proxy.url, SCHEMA: schema, PORT: String(port) });
      children.push(consumer.child);
      const sql = await connectSql(schema);
      try {
        await waitForOutput(consumer, 'Retrying in');
        proxy.restore();
        await waitForOutput(consumer, 'consumer listening');
        const base = `http://127.0.0.1:${port}`;
        const put = (route: string, value: unknown) =>
          fetch(`${base}/${route}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) });

        expect((await put('profiles/1', { name: 'Ada' })).status).toBe(204);
        expect(await (await fetch(`${base}/profiles/1`)).json()).toEqual({ name: 'Ada' });
        // Two named instances: the same key holds two values.
        expect((await put('audit/profile:1', { by: 'audit' })).status).toBe(204);
        expect(await (await fetch(`${base}/audit/profile:1`)).json()).toEqual({ by: 'audit' });
        // The exported filter: bad input 400, a full instance 503 with Retry-After, one body shape.
        const bad = await put(`profiles/${'x'.repeat(600)}`, { name: 'long' });
        expect(bad.status).toBe(400);
        expect(await bad.json()).toMatchObject({ statusCode: 400, error: 'WriteBackInvalidKeyError' });
        expect((await put('audit/second', { n: 2 })).status).toBe(204);
        const full = await put('audit/third', { n: 3 });
        expect(full.status).toBe(503);
        expect(full.headers.get('retry-after')).toBe('1');
        expect(await full.json()).toMatchObject({ statusCode: 503, error: 'WriteBackOverloadedError' });

        const flush = await fetch(`${base}/flush`, { method: 'POST' });
        expect(await flush.json()).toMatchObject({ requested: 1, committed: 1, deadLettered: 0 });
        expect((await tableRows(sql)).get('profile:1')?.value).toEqual({ name: 'Ada' });

        // The app's @Interval(100) runs, and was scheduled once (two ScheduleModule roots would schedule it twice).
        let counters = { ticks: 0, scheduled: 0 };
        const deadline = Date.now() + 10_000;
        while (counters.ticks < 3 && Date.now() < deadline) counters = (await (await fetch(`${base}/ticks`)).json()) as typeof counters;
        expect(counters.ticks).toBeGreaterThanOrEqual(3);
        expect(counters.scheduled).toBe(1);

        expect((await put('profiles/2', { name: 'pending' })).status).toBe(204);
        consumer.child.kill('SIGTERM');
        expect(await consumer.exited, consumer.output()).toBe('SIGTERM');
        expect((await tableRows(sql)).get('profile:2')?.value).toEqual({ name: 'pending' });

        // A database that never comes: a clear error naming where, never the password, and a non-zero exit.
        if (flavour.type === 'module') {
          proxy.refuse();
          const url = new URL(proxy.url);
          url.password = 'pw-never-printed';
          const never = startConsumer(app, { DATABASE_URL: url.toString(), RETRY_ATTEMPTS: '1', PORT: String(port) });
          children.push(never.child);
          expect(await never.exited).toBe(1);
          expect(never.output()).toMatch(new RegExp(`Could not connect to Postgres at 127\\.0\\.0\\.1:${proxy.port}, database "[^"]+" \\(attempt 2 of 2\\)`));
          expect(never.output()).not.toContain('pw-never-printed');
        }
      } finally {
        await sql.end();
        await proxy.close();
      }
    }, 420_000);
  }
});

function repoVersionIn(dir: string, name: string): string {
  return (JSON.parse(readFileSync(path.join(dir, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}
