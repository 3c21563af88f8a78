// The replicas issue's check, over HTTP only: three demo processes (node dist/main.js, flushIntervalMs 200) behind
// a PgBouncer of their own in transaction mode (Debian's pgbouncer, /usr/sbin/pgbouncer), LISTEN direct to Postgres.
// Prints: commit (writeThrough PUT on A) -> fresh GET on B and C; stale reads 3 s after write-back PUTs and deletes;
// three clients writing through random replicas for 10 s, then stale reads on every replica and wrong rows.
// Needs `npm run build` and Postgres at 127.0.0.1:5432; creates and drops its own database. Run as root: pgbouncer
// is started as nobody. It ends with each instance's stats (flush errors, dirty, lastError); TRACE=<key> logs each
// write of that key, TRACE_ACTIVITY=1 the database's pg_stat_activity.  node bench/replicas-demo-check.mjs
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
const server = 'postgres://postgres@127.0.0.1:5432/postgres';
const db = `write_back_manual_${process.pid}`;
const admin = new pg.Client({ connectionString: server }); await admin.connect();
await admin.query(`CREATE DATABASE ${db}`);
const dir = mkdtempSync(path.join(os.tmpdir(), 'wb-manual-')); chmodSync(dir, 0o755);
const bport = 16000 + (process.pid % 1000);
writeFileSync(`${dir}/users.txt`, '"postgres" ""\n', { mode: 0o644 });
writeFileSync(`${dir}/pgb.ini`, `[databases]\n* = host=127.0.0.1 port=5432\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = ${bport}\nunix_socket_dir =\nauth_type = trust\nauth_file = ${dir}/users.txt\npool_mode = transaction\ndefault_pool_size = 8\nmax_client_conn = 300\n`, { mode: 0o644 });
const bouncer = spawn('/usr/sbin/pgbouncer', ['-u', 'nobody', `${dir}/pgb.ini`], { stdio: 'ignore' });
await new Promise((r) => setTimeout(r, 500));
const ports = [17100, 17101, 17102].map((p) => p + (process.pid % 500));
const procs = ports.map((port, i) => spawn('node', ['dist/main.js'], {
  env: { ...process.env, PORT: String(port), DATABASE_URL: `postgres://postgres@127.0.0.1:${bport}/${db}`, WRITE_BACK_LISTEN_URL: `postgres://postgres@127.0.0.1:5432/${db}`, WRITE_BACK_FLUSH_INTERVAL_MS: '200' },
  stdio: ['ignore', 'ignore', 'inherit'],
}));
const url = (i, p) => `http://127.0.0.1:${ports[i]}${p}`;
for (const i of [0, 1, 2]) for (;;) { try { if ((await fetch(url(i, '/health/ready'))).ok) break; } catch {} await new Promise((r) => setTimeout(r, 100)); }
const put = (i, k, v, q = '') => fetch(url(i, `/kv/${k}${q}`), { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(v) });
const get = async (i, k) => { const r = await fetch(url(i, `/kv/${k}`)); return r.status === 404 ? undefined : r.json(); };
// (a) commit on A (writeThrough) -> B and C fresh
for (let k = 0; k < 100; k++) await put(0, `k${k}`, { v: 1 }, '?writeThrough=true');
for (let k = 0; k < 100; k++) { await get(1, `k${k}`); await get(2, `k${k}`); }
const lat = [];
for (let k = 0; k < 100; k++) {
  await put(0, `k${k}`, { v: 2 }, '?writeThrough=true');
  const t0 = performance.now();
  for (const i of [1, 2]) { while ((await get(i, `k${k}`))?.v !== 2) {} lat.push(performance.now() - t0); }
}
lat.sort((a, b) => a - b);
console.log('commit->fresh over HTTP: p50', lat[100].toFixed(1), 'ms p99', lat[197].toFixed(1), 'ms max', lat[199].toFixed(1));
// (a2) write-back (no writeThrough): stale after 3 s?
for (let k = 0; k < 100; k++) await put(0, `k${k}`, { v: 3 });
await new Promise((r) => setTimeout(r, 3000));
let stale = 0; for (let k = 0; k < 100; k++) for (const i of [1, 2]) if ((await get(i, `k${k}`))?.v !== 3) stale++;
console.log('after 3 s, stale reads of v3 on B/C:', stale, 'of 200');
// (b) deletes
for (let k = 0; k < 10; k++) await fetch(url(0, `/kv/k${k}`), { method: 'DELETE' });
await new Promise((r) => setTimeout(r, 3000));
stale = 0; for (let k = 0; k < 10; k++) for (const i of [1, 2]) if ((await get(i, `k${k}`)) !== undefined) stale++;
console.log('after 3 s, deleted keys still served on B/C:', stale, 'of 20');
// (c) three clients through random replicas for 10 s
const last = new Map(); const end = Date.now() + 10_000;
const failed = [];
await Promise.all([0, 1, 2].map(async (c) => {
  let n = 0;
  while (Date.now() < end) {
    const k = `c${c}:${n % 100}`;
    const i = Math.floor(Math.random() * 3);
    const remove = Math.random() < 0.1;
    const r = remove ? await fetch(url(i, `/kv/${k}`), { method: 'DELETE' }) : await put(i, k, { n });
    if (r.status !== 204) failed.push(`${r.status} ${await r.text()}`);
    else last.set(k, remove ? undefined : { n });
    if (process.env.TRACE === k) console.log('trace', k, remove ? 'del' : 'put', n, 'via', i);
    n++;
  }
}));
if (failed.length) console.log('failed writes:', failed.length, failed.slice(0, 3));
await new Promise((r) => setTimeout(r, 3000));
stale = 0; let total = 0; for (const [k, v] of last) for (const i of [0, 1, 2]) { total++; if (JSON.stringify(await get(i, k)) !== JSON.stringify(v)) stale++; }
const direct = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:5432/${db}` }); await direct.connect();
const table = new Map((await direct.query('SELECT key, value FROM write_back_entries')).rows.map((r) => [r.key, r.value]));
let wrong = 0;
for (const [k, v] of last) {
  if (JSON.stringify(table.get(k)) === JSON.stringify(v)) continue;
  if (wrong++ < 3) console.log('wrong row', k, 'table', JSON.stringify(table.get(k)), 'last acknowledged', JSON.stringify(v), JSON.stringify((await direct.query('SELECT version::text, updated_at FROM write_back_entries WHERE key = $1', [k])).rows), JSON.stringify((await direct.query('SELECT version::text FROM write_back_tombstones WHERE key = $1', [k])).rows));
}
console.log(`random replicas: ${last.size} keys; stale reads after 3 s ${stale} of ${total}; Postgres rows not the last acknowledged value: ${wrong}`);
for (const i of [0, 1, 2]) {
  const stats = await (await fetch(url(i, '/kv/_stats'))).json();
  console.log(`instance ${i}: ${JSON.stringify(stats)}`);
}
const activity = await direct.query(`SELECT pid, state, wait_event_type, wait_event, left(query, 120) AS q, now() - query_start AS age FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`);
if (process.env.TRACE_ACTIVITY) for (const r of activity.rows) console.log('activity', JSON.stringify(r));
await direct.end();
for (const p of procs) p.kill('SIGTERM');
await Promise.all(procs.map((p) => new Promise((r) => p.once('exit', r))));
bouncer.kill('SIGTERM');
await admin.query(`DROP DATABASE ${db} WITH (FORCE)`); await admin.end();
process.exit(0);
