// `npm run bench` (full) and `npm run bench -- --quick` (every scenario, under a minute, never fails on targets).
// Each scenario runs in its own child process (own heap and JIT state) with its baseline in that same process.
// Options: --quick, --only=set,get,..., --profile (CPU profiles of each child into bench/profiles/), --no-write.
import { execFileSync, fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { adminQuery, createBenchDatabase, DEFAULT_SERVER_URL, dropBenchDatabase } from './lib/db.mjs';
import { renderSvg, renderTable } from './lib/report.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const SCENARIOS = ['set', 'get', 'sustained', 'wal', 'memory', 'http', 'counters', 'replicas', 'entities'];

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const profile = args.includes('--profile');
const write = !args.includes('--no-write');
const onlyArg = args.find((a) => a.startsWith('--only='));
const only = onlyArg ? onlyArg.slice('--only='.length).split(',').filter(Boolean) : SCENARIOS;
for (const name of only) if (!SCENARIOS.includes(name)) throw new Error(`unknown scenario "${name}" (known: ${SCENARIOS.join(', ')})`);
const unknown = args.filter((a) => !['--quick', '--profile', '--no-write'].includes(a) && !a.startsWith('--only='));
if (unknown.length) throw new Error(`unknown argument(s): ${unknown.join(' ')}`);

const serverUrl = process.env.DATABASE_URL?.trim() || DEFAULT_SERVER_URL; // empty means unset
const dbName = `write_back_bench_${process.pid}`;
const command =
  process.env.npm_lifecycle_event === 'bench' ? `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}` : `node bench/run.mjs ${args.join(' ')}`.trim();

function git(...a) {
  try {
    return execFileSync('git', a, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

function runChild(name, ctx, profileDir) {
  return new Promise((resolve) => {
    const execArgv = ['--expose-gc', '--max-old-space-size=6144'];
    if (profileDir) execArgv.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}.cpuprofile`);
    const child = fork(join(here, 'child.mjs'), [name], {
      execArgv,
      env: { ...process.env, BENCH_CTX: JSON.stringify(ctx) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let message;
    const limitMs = quick ? 120_000 : 1_200_000;
    const timer = setTimeout(() => {
      message = { ok: false, error: `timed out after ${limitMs / 1000} s` };
      child.kill('SIGKILL');
    }, limitMs);
    child.on('message', (m) => (message = m));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(message ?? { ok: false, error: `child exited with ${signal ?? code} before reporting` });
    });
  });
}

async function main() {
  const started = performance.now();
  const loadStart = os.loadavg().map((x) => Number(x.toFixed(2)));
  const pgVersion = (await adminQuery(serverUrl, 'SELECT version() AS v')).rows[0].v;
  const url = await createBenchDatabase(serverUrl, dbName);
  let interrupted = false;
  process.on('SIGINT', () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('[bench] interrupted: dropping the bench database\n');
    dropBenchDatabase(serverUrl, dbName).finally(() => process.exit(130));
  });
  const stamp = new Date();
  const date = stamp.toISOString().slice(0, 10);
  const profileDir = profile ? join(here, 'profiles', stamp.toISOString().replace(/[:.]/g, '-')) : undefined;
  if (profileDir) mkdirSync(profileDir, { recursive: true });

  const scenarios = [];
  let crashed = false;
  try {
    for (const name of only) {
      process.stderr.write(`[bench] ---- ${name} (${quick ? 'quick' : 'full'})\n`);
      const t0 = performance.now();
      const message = await runChild(name, { quick, url, serverUrl, root }, profileDir);
      if (message.ok) {
        scenarios.push(message.result);
      } else {
        crashed = true;
        process.stderr.write(`[bench] ${name} crashed: ${message.error}\n`);
        scenarios.push({ scenario: name, status: 'error', error: message.error, durationMs: Math.round(performance.now() - t0), checks: [] });
      }
    }
  } finally {
    await dropBenchDatabase(serverUrl, dbName).catch((e) => process.stderr.write(`[bench] could not drop ${dbName}: ${e.message}\n`));
  }

  const cpus = os.cpus();
  const report = {
    meta: {
      date,
      startedAt: stamp.toISOString(),
      mode: quick ? 'quick' : 'full',
      command,
      durationMs: Math.round(performance.now() - started),
      machine: {
        cpus: cpus.length,
        cpuModel: cpus[0]?.model?.trim() ?? 'unknown',
        memoryGiB: Math.round(os.totalmem() / 2 ** 30),
        platform: `${os.platform()} ${os.release()} ${os.arch()}`,
        node: process.version,
        postgres: pgVersion,
      },
      loadAverage: { start: loadStart, end: os.loadavg().map((x) => Number(x.toFixed(2))) },
      git: { commit: git('rev-parse', 'HEAD'), uncommittedFiles: (git('status', '--porcelain') ?? '').split('\n').filter(Boolean).length },
      build: process.env.BENCH_DIST ?? 'dist (npm run build)',
      serviceOptionOverrides: process.env.BENCH_SERVICE_OPTIONS ? JSON.parse(process.env.BENCH_SERVICE_OPTIONS) : null,
      database: `${dbName} (created for the run, dropped at the end)`,
      profileDir: profileDir ?? null,
    },
    scenarios,
    summary: summarize(scenarios),
  };
  const text = renderTable(report);
  process.stdout.write(`${text}\n`);
  if (write) {
    const dir = join(here, 'results');
    mkdirSync(dir, { recursive: true });
    const base = join(dir, quick ? `${date}-quick` : date);
    writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(`${base}.svg`, `${renderSvg(report)}\n`);
    process.stdout.write(`results: ${base}.json, ${base}.svg\n`);
  }
  // Targets are reported, never enforced by the exit code; only a crashed scenario fails the run.
  process.exitCode = crashed ? 1 : 0;
}

function summarize(scenarios) {
  const checks = scenarios.flatMap((s) => (s.checks ?? []).map((c) => ({ scenario: s.scenario, ...c })));
  const counted = checks.filter((c) => !c.skipped);
  return {
    targetsMet: counted.filter((c) => c.pass).length,
    targets: counted.length,
    failed: counted.filter((c) => !c.pass).map((c) => c.id),
    skipped: scenarios.filter((s) => s.status === 'skipped').map((s) => `${s.scenario}: ${s.reason}`),
    crashed: scenarios.filter((s) => s.status === 'error').map((s) => s.scenario),
  };
}

main().catch((error) => {
  process.stderr.write(`[bench] failed: ${error?.stack ?? error}\n`);
  dropBenchDatabase(serverUrl, dbName)
    .catch(() => undefined)
    .finally(() => process.exit(1));
});
