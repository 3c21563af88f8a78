// Scenario 6: the demo service's PUT /kv/:key under autocannon, write-back against ?writeThrough=true.
// The service runs as its own process (`node dist/main.js`, as `npm start` would), autocannon runs here.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { VALUE_JSON, VALUE_POOL_SIZE, log, median, round, sleep } from '../lib/util.mjs';
import { distDir } from '../lib/service.mjs';

const POOL_MASK = VALUE_POOL_SIZE - 1;
const KEY_SPACE = 100_000;
const CONNECTIONS = 32;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startDemo(root, url, port, schema) {
  const output = [];
  const child = spawn(process.execPath, [join(distDir, 'main.js')], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: url,
      PORT: String(port),
      WRITE_BACK_SCHEMA: schema,
      WRITE_BACK_SHUTDOWN_TIMEOUT_MS: '5000',
      NODE_ENV: 'production',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (chunk) => {
    output.push(chunk.toString());
    if (output.length > 200) output.shift();
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  child.on('exit', (code, signal) => (exited = signal ?? code));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited !== null) throw new Error(`demo service exited (${exited}) during start-up:\n${output.join('')}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/health/live`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`demo service did not answer /health/live within 30 s:\n${output.join('')}`);
    }
    await sleep(100);
  }
  return {
    output,
    async stop() {
      if (exited !== null) return exited;
      const done = new Promise((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const result = await done;
      clearTimeout(timer);
      return result;
    },
  };
}

async function cannon(port, seconds, writeThrough, counter) {
  const suffix = writeThrough ? '?writeThrough=true' : '';
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: CONNECTIONS,
    pipelining: 1,
    duration: seconds,
    requests: [
      {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        setupRequest: (req) => {
          const i = counter.next++;
          return { ...req, path: `/kv/http:${i % KEY_SPACE}${suffix}`, body: VALUE_JSON[i & POOL_MASK] };
        },
      },
    ],
  });
  return {
    reqPerSec: round(result.requests.average, 0),
    requests: result.requests.total,
    latencyMs: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max },
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}

export async function run(ctx) {
  const { quick, url, root } = ctx;
  const seconds = quick ? 2 : 8;
  const rounds = quick ? 1 : 2;
  const port = await freePort();
  const schema = `bench_http_${process.pid}`;
  log(`http: starting node dist/main.js on port ${port}`);
  const demo = await startDemo(root, url, port, schema);
  const counter = { next: 0 };
  const writeBack = [];
  const writeThrough = [];
  let stopResult;
  try {
    await cannon(port, 1, false, counter); // warm-up
    if (!quick) await cannon(port, 1, true, counter);
    for (let r = 0; r < rounds; r++) {
      writeBack.push(await cannon(port, seconds, false, counter));
      log(`http: write-back ${writeBack.at(-1).reqPerSec} req/s p99 ${writeBack.at(-1).latencyMs.p99} ms`);
      writeThrough.push(await cannon(port, seconds, true, counter));
      log(`http: write-through ${writeThrough.at(-1).reqPerSec} req/s p99 ${writeThrough.at(-1).latencyMs.p99} ms`);
    }
    const stats = await (await fetch(`http://127.0.0.1:${port}/admin/stats`)).json();
    var serverStats = { writes: stats.writes, flushedEntries: stats.flushedEntries, flushes: stats.flushes, dirty: stats.dirty, flushErrors: stats.flushErrors };
  } finally {
    stopResult = await demo.stop();
  }
  const wb = median(writeBack.map((r) => r.reqPerSec));
  const wt = median(writeThrough.map((r) => r.reqPerSec));
  const failures = [...writeBack, ...writeThrough].reduce((n, r) => n + r.non2xx + r.errors + r.timeouts, 0);
  const lat = (runs) => `p50 ${round(median(runs.map((r) => r.latencyMs.p50)), 1)} / p99 ${round(median(runs.map((r) => r.latencyMs.p99)), 1)} ms`;
  return {
    title: 'HTTP PUT /kv/:key (demo service, autocannon)',
    metrics: {
      method: `node dist/main.js on real Postgres; autocannon in another process, ${CONNECTIONS} connections, pipelining 1, ${seconds} s per run, ${rounds} alternating round(s); keys cycle over ${KEY_SPACE}; bodies ~${VALUE_JSON[0].length} B JSON.`,
      writeBack,
      writeThrough,
      ratio: round(wb / wt, 2),
      failedRequests: failures,
      serverStats,
      serverExit: stopResult,
    },
    rows: [
      { figure: 'PUT write-back', text: `${Math.round(wb).toLocaleString('en-US')} req/s`, baselineText: lat(writeBack) },
      { figure: 'PUT ?writeThrough=true (baseline)', text: `${Math.round(wt).toLocaleString('en-US')} req/s`, baselineText: lat(writeThrough) },
      { figure: 'write-back vs write-through', value: Math.round(wb), unit: 'req/s', baseline: Math.round(wt), ratio: round(wb / wt, 2) },
      { figure: 'failed requests (non-2xx, errors, timeouts)', text: String(failures) },
    ],
    checks: [],
    notes: ['No target for HTTP in DESIGN.md: reported for information.'],
  };
}
