import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { inject } from 'vitest';

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

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

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
  const deadline = Date.now() + timeoutMs;
  let exitedEarly: number | string | undefined;
  void exited.then((code) => (exitedEarly = code));
  for (;;) {
    if (exitedEarly !== undefined) throw new Error(`demo exited (${exitedEarly}) before serving:\n${output}`);
    try {
      const response = await fetch(`${url}/health/live`);
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`demo did not serve within ${timeoutMs} ms:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, url, output: () => output, exited };
}
