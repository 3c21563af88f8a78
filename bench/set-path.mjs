// The `set` path alone: `await service.set()` on 10k hot keys with `autoFlush: false` (no flusher, no Postgres
// traffic after start-up), yielding every 500 calls; prints the median of five 1 s rounds in sets per process
// CPU-second. For A/B runs of a change to the set path on a shared machine, alternating builds:
//   npm run build && BENCH_DIST=/path/to/other/dist node bench/set-path.mjs && node bench/set-path.mjs
// Needs PostgreSQL for start-up (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres).
import { noByteBounds, startService } from './lib/service.mjs';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const svc = await startService(url, { durability: 'none', autoFlush: false, maxDirtyEntries: 1_100_000, ...noByteBounds }, 'setpath');
const keys = Array.from({ length: 10_000 }, (_, i) => `hot:${i}`);
const values = Array.from({ length: 64 }, (_, i) => ({ id: i, name: `customer ${i}`, tags: ['a', 'b'], nested: { x: i, y: 'z'.repeat(100) } }));

async function round(ms) {
  const end = performance.now() + ms;
  const cpu0 = process.cpuUsage();
  let n = 0;
  while (performance.now() < end) {
    for (let j = 0; j < 500; j++, n++) await svc.service.set(keys[(n * 7919) % 10_000], values[n & 63]);
    await new Promise((resolve) => setImmediate(resolve));
  }
  const cpu = process.cpuUsage(cpu0);
  return n / ((cpu.user + cpu.system) / 1e6);
}

await round(500);
const rounds = [];
for (let i = 0; i < 5; i++) rounds.push(await round(1000));
rounds.sort((a, b) => a - b);
console.log(`${process.env.BENCH_DIST ?? 'dist'}: median ${Math.round(rounds[2])} sets per CPU-second (rounds ${rounds.map(Math.round).join(', ')})`);
await svc.close();
process.exit(0);
