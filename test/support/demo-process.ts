import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { inject } from 'vitest';
import { freePort } from './ports.js';
import { until } from './wait.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
/**
 * Each test worker compiles into a directory of its own under the repo (so `node` still finds node_modules):
 * two workers writing one dist/ while a third starts from it would run half-written files.
 */
const buildDir = () => path.join(inject('testBuildDir'), String(process.pid));
let built = false;

/** Compiles the demo once per test worker, so a spec can run it as a real process. */
export function buildDemo(): void {
  if (built) return;
  execFileSync(path.join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json', '--outDir', buildDir()], {
    cwd: ROOT,
    stdio: 'pipe',
    timeout: 180_000,
  });
  built = true;
}

/** The compiled demo entry point of this worker. */
export const demoMain = (): string => path.join(buildDir(), 'main.js');

export interface DemoProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
}

/**
 * Starts the compiled demo (`node main.js`, as the image does) with `env` on top of a clean environment (no inherited WRITE_BACK_* variables)
 * and waits until /health/live answers.
 */
export async function startDemo(env: Record<string, string>, timeoutMs = 60_000): Promise<DemoProcess> {
  const port = await freePort();
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith('WRITE_BACK_') && !['DATABASE_URL', 'HOST', 'API_TOKEN'].includes(name)),
  );
  const child = spawn(process.execPath, [demoMain()], {
    cwd: ROOT,
    env: { ...base, PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const url = `http://127.0.0.1:${port}`;
  let exitedEarly: number | string | undefined;
  void exited.then((code) => (exitedEarly = code));
  const serving = async () => {
    if (exitedEarly !== undefined) throw new Error(`demo exited (${exitedEarly}) before serving:\n${output}`);
    // Refused until it listens.
    return fetch(`${url}/health/live`).then((response) => response.status === 200, () => false);
  };
  try {
    await until(serving, timeoutMs, () => `the demo to serve:\n${output}`);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return { child, url, output: () => output, exited };
}
