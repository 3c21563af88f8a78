import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/demo-process.js';
import { connectSql, databaseUrl, freshSchema, tableRows } from '../support/e2e.js';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
};

/** The version of a package installed in the repository (the app gets exactly the same one). */
const repoVersion = (name: string): string =>
  (JSON.parse(readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;

const optionalPeers = Object.entries(manifest.peerDependenciesMeta ?? {})
  .filter(([, meta]) => meta.optional)
  .map(([name]) => name);
/** The required peers, plus what the app itself needs: an HTTP platform and Node's typings to compile. */
const appPackages = [
  ...Object.keys(manifest.peerDependencies).filter((name) => !optionalPeers.includes(name)),
  '@nestjs/platform-express',
  '@types/node',
].map((name) => `${name}@${repoVersion(name)}`);

/** A small Nest app as a user writes it: a controller with the injected WriteBackService. */
const APP_SOURCE = `import 'reflect-metadata';
import { Body, Controller, Get, HttpCode, Module, NotFoundException, Param, Post, Put } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { WriteBackModule, WriteBackService, type FlushReport } from 'nestjs-write-back';

@Controller('items')
class ItemsController {
  constructor(private readonly cache: WriteBackService) {}

  @Put(':key')
  @HttpCode(204)
  async put(@Param('key') key: string, @Body() body: Record<string, unknown>): Promise<void> {
    await this.cache.set(key, body);
  }

  @Get(':key')
  async get(@Param('key') key: string): Promise<unknown> {
    const value = await this.cache.get<Record<string, unknown>>(key);
    if (value === undefined) throw new NotFoundException();
    return value;
  }

  @Post('_flush')
  @HttpCode(200)
  flush(): Promise<FlushReport> {
    return this.cache.flush();
  }
}

@Module({
  imports: [
    WriteBackModule.forRoot({ url: process.env.DATABASE_URL!, schema: process.env.SCHEMA, flushIntervalMs: 60_000 }),
  ],
  controllers: [ItemsController],
})
class AppModule {}

const app = await NestFactory.create(AppModule, { logger: ['error', 'warn', 'log'] });
app.enableShutdownHooks();
await app.listen(Number(process.env.PORT), '127.0.0.1');
console.log('resolved nestjs-write-back at ' + import.meta.resolve('nestjs-write-back'));
console.log('consumer listening');
`;

/** Like the repository's tsconfig: legacy decorators with metadata (Nest DI by type), ESM via nodenext. */
const APP_TSCONFIG = {
  compilerOptions: {
    target: 'ES2023',
    lib: ['ES2023'],
    module: 'nodenext',
    moduleResolution: 'nodenext',
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
};

/** npm with a clean environment: no npm_* variables of the `npm test` that may have started us. */
function npmEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
}

describe('the packed library installed into a throw-away Nest app', () => {
  const cleanup: string[] = [];
  let child: ChildProcess | undefined;
  afterAll(async () => {
    if (child?.exitCode === null) child.kill('SIGKILL');
    for (const dir of cleanup) await rm(dir, { recursive: true, force: true });
  });

  it('npm pack -> npm install (outside the repo) -> tsc -> boot on Postgres: write, flush, read back', async (context) => {
    const work = await realpath(await mkdtemp(path.join(os.tmpdir(), 'write-back-consumer-')));
    cleanup.push(work);

    // `npm run build` into a directory of this test (the repository's dist/ may be in use by other workers),
    // beside package.json and README.md: exactly what `npm pack` reads from the repository.
    const source = path.join(work, 'package');
    await run(path.join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.build.json', '--outDir', path.join(source, 'dist')], { cwd: ROOT });
    for (const file of ['package.json', 'README.md', 'LICENSE']) {
      if (existsSync(path.join(ROOT, file))) await copyFile(path.join(ROOT, file), path.join(source, file));
    }
    const packed = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: source, env: npmEnv() });
    const [{ filename, files }] = JSON.parse(packed.stdout) as [{ filename: string; files: { path: string }[] }];
    const tarball = path.join(work, filename);
    expect(existsSync(tarball)).toBe(true);
    expect(files.map((f) => f.path)).toContain('dist/write-back/index.js');
    expect(files.map((f) => f.path).filter((f) => /^dist\/(main|app\.module)\.js$|^src\/|^test\//.test(f))).toEqual([]);

    const app = path.join(work, 'app');
    await mkdir(path.join(app, 'src'), { recursive: true });
    await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'write-back-consumer', private: true, type: 'module' }, null, 2));
    await writeFile(path.join(app, 'tsconfig.json'), JSON.stringify(APP_TSCONFIG, null, 2));
    await writeFile(path.join(app, 'src/main.ts'), APP_SOURCE);

    // The npm cache holds every package the repository installed, so this works without a network; if the
    // cache was cleaned, the registry is asked.
    const install = ['install', '--no-audit', '--no-fund', '--ignore-scripts', tarball, ...appPackages];
    const failures: string[] = [];
    let installed = false;
    for (const mode of ['--offline', '--prefer-offline']) {
      try {
        const started = Date.now();
        await run('npm', [...install, mode], { cwd: app, env: npmEnv(), timeout: 120_000 });
        console.log(`[package] npm install ${mode} of ${filename} + ${appPackages.join(' ')}: ${Date.now() - started} ms`);
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
    const appManifest = JSON.parse(readFileSync(path.join(app, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(appManifest.dependencies[manifest.name]).toMatch(/^file:.*\.tgz$/);
    // The optional peers are not installed: the library must start without them.
    for (const name of optionalPeers) expect(existsSync(path.join(app, 'node_modules', name)), `${name} not installed`).toBe(false);
    expect(existsSync(path.join(app, 'node_modules', manifest.name, 'dist/write-back/index.d.ts'))).toBe(true);

    try {
      await run(path.join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], { cwd: app });
    } catch (error) {
      throw new Error(`the app does not compile against the package:\n${(error as { stdout?: string }).stdout}`);
    }

    const schema = freshSchema();
    const port = await freePort();
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('WRITE_BACK_')));
    child = spawn(process.execPath, ['dist/main.js'], {
      cwd: app,
      env: { ...env, DATABASE_URL: databaseUrl(), SCHEMA: schema, PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (chunk) => (output += chunk));
    child.stderr!.on('data', (chunk) => (output += chunk));
    const exited = new Promise<number | string>((resolve) => child!.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
    const deadline = Date.now() + 30_000;
    while (!output.includes('consumer listening')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the app did not start:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // The library came from the app's own node_modules (the tarball), not from the repository.
    expect(output).toContain(`resolved nestjs-write-back at file://${app}/node_modules/${manifest.name}/dist/write-back/index.js`);

    const base = `http://127.0.0.1:${port}/items`;
    const put = (key: string, value: unknown) =>
      fetch(`${base}/${key}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) });
    const sql = await connectSql(schema);
    try {
      expect((await put('alpha', { n: 1, tags: ['a'] })).status).toBe(204);
      const read = await fetch(`${base}/alpha`);
      expect(read.status).toBe(200);
      expect(await read.json()).toEqual({ n: 1, tags: ['a'] });
      // Read-your-writes from memory: nothing is in the table before the flush.
      expect((await tableRows(sql)).size).toBe(0);

      const flush = await fetch(`${base}/_flush`, { method: 'POST' });
      expect(flush.status).toBe(200);
      expect(await flush.json()).toMatchObject({ requested: 1, committed: 1, deadLettered: 0 });
      expect((await tableRows(sql)).get('alpha')?.value).toEqual({ n: 1, tags: ['a'] });
      expect((await fetch(`${base}/missing`)).status).toBe(404);

      // A write still pending at SIGTERM is drained by the module's shutdown hook.
      expect((await put('beta', { n: 2 })).status).toBe(204);
      child.kill('SIGTERM');
      // enableShutdownHooks() runs the hooks, then re-raises the signal: the process ends by SIGTERM.
      expect(await exited, output).toBe('SIGTERM');
      expect(output).toMatch(/Shutdown drain flushed 1 entries/);
      expect((await tableRows(sql)).get('beta')?.value).toEqual({ n: 2 });
    } finally {
      await sql.end();
    }
  }, 180_000);
});
