import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { freePort } from './ports.js';
import { tempDir } from './temp-dir.js';
import { until } from './wait.js';

/** Where Debian's `pgbouncer` package installs the binary; `PGBOUNCER_BIN` overrides. */
const CANDIDATES = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'];

export function pgbouncerBinary(): string | undefined {
  const configured = process.env.PGBOUNCER_BIN;
  if (configured) return configured;
  return CANDIDATES.find((candidate) => existsSync(candidate));
}

/**
 * Why the PgBouncer specs cannot run here, or undefined when they can. A developer machine without pgbouncer skips
 * them with this reason; under CI (`WRITE_BACK_TEST_REQUIRE_POSTGRES=1`, set by .ci/run, which installs pgbouncer)
 * they never skip: a missing binary fails them in {@link startPgBouncer}.
 */
export function pgbouncerSkipReason(isPglite: boolean): string | undefined {
  if (isPglite) return 'needs a real Postgres server behind PgBouncer (embedded PGlite is not one)';
  if (process.env.WRITE_BACK_TEST_REQUIRE_POSTGRES === '1') return undefined;
  if (pgbouncerBinary() === undefined) {
    return 'pgbouncer is not installed (apt-get install pgbouncer, or set PGBOUNCER_BIN); .ci/run installs it';
  }
  return undefined;
}

export interface PgBouncerOptions {
  /** `default_pool_size`: server connections per database/user pair. */
  poolSize?: number;
}

export interface PgBouncer {
  port: number;
  /** `url` (a postgres:// URL of the real server) with host and port replaced by this PgBouncer's. */
  url(url: string): string;
  /** Stops PgBouncer at once (SIGTERM: immediate shutdown, every client and server connection is cut) and starts it again on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
  /** What PgBouncer logged (stderr), for failure messages. */
  log(): string;
}

/**
 * Runs PgBouncer as a plain process on a free loopback port with its own ini in a temp dir: transaction pooling,
 * trust auth, every database forwarded to the Postgres at `serverHost:serverPort`. Running as root it switches to
 * `nobody` (PgBouncer refuses to run as root).
 */
export async function startPgBouncer(
  server: { host: string; port: number },
  options: PgBouncerOptions = {},
): Promise<PgBouncer> {
  const binary = pgbouncerBinary();
  if (binary === undefined) {
    throw new Error(
      'pgbouncer is required here (WRITE_BACK_TEST_REQUIRE_POSTGRES=1) but not installed: apt-get install -y pgbouncer, or set PGBOUNCER_BIN',
    );
  }
  const dir = await tempDir('write-back-pgbouncer-');
  await chmod(dir, 0o755);
  const port = await freePort();
  const ini = path.join(dir, 'pgbouncer.ini');
  await writeFile(path.join(dir, 'users.txt'), '"postgres" ""\n', { mode: 0o644 });
  await writeFile(
    ini,
    [
      '[databases]',
      `* = host=${server.host} port=${server.port}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'users.txt')}`,
      'pool_mode = transaction',
      `default_pool_size = ${options.poolSize ?? 4}`,
      'max_client_conn = 500',
      // PgBouncer tracks these start-up parameters itself; anything else (statement_timeout, options) is refused.
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  let child: ChildProcess | undefined;
  let output = '';
  const launch = async () => {
    const args = process.getuid?.() === 0 ? ['-u', 'nobody', ini] : [ini];
    const started = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = started;
    started.stdout!.on('data', (chunk) => (output += chunk));
    started.stderr!.on('data', (chunk) => (output += chunk));
    let exited = false;
    started.once('exit', () => (exited = true));
    await until(
      () => {
        if (exited) throw new Error(`pgbouncer exited at start:\n${output}`);
        return canConnect(port);
      },
      10_000,
      () => `pgbouncer to listen on ${port}:\n${output}`,
    );
  };
  const kill = async () => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGTERM');
    await exited;
  };
  await launch();
  return {
    port,
    url(url: string) {
      const parsed = new URL(url);
      parsed.hostname = '127.0.0.1';
      parsed.port = String(port);
      return parsed.toString();
    },
    async restart() {
      await kill();
      await launch();
    },
    // Its directory goes with the test or the file that started it (tempDir).
    async stop() {
      await kill();
    },
    log: () => output,
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
