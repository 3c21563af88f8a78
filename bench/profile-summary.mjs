// Prints the top self-time functions of a V8 .cpuprofile (from `node --cpu-prof` or `npm run bench -- --profile`).
// Usage: node bench/profile-summary.mjs <file.cpuprofile> [top=25] [filter-substring]
import { readFileSync } from 'node:fs';

const [file, topArg, filter] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/profile-summary.mjs <file.cpuprofile> [top] [filter]');
  process.exit(2);
}
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Self time per node from the sample deltas.
const self = new Map();
const { samples, timeDeltas } = profile;
for (let i = 0; i < samples.length; i++) self.set(samples[i], (self.get(samples[i]) ?? 0) + (timeDeltas[i] ?? 0));
const total = [...self.values()].reduce((a, b) => a + b, 0);

const nameOf = (n) => {
  const f = n.callFrame;
  const where = f.url ? `${f.url.replace(/^file:\/\/.*?\/(node_modules|dist|bench)\//, '$1/')}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'} ${where}`.trim();
};

const selfByFn = new Map();
const totalByFn = new Map();
for (const n of profile.nodes) {
  const name = nameOf(n);
  selfByFn.set(name, (selfByFn.get(name) ?? 0) + (self.get(n.id) ?? 0));
}
// Inclusive time: walk each sample's stack once per distinct function.
for (let i = 0; i < samples.length; i++) {
  const seen = new Set();
  for (let id = samples[i]; id !== undefined; id = parent.get(id)) {
    const name = nameOf(byId.get(id));
    if (seen.has(name)) continue;
    seen.add(name);
    totalByFn.set(name, (totalByFn.get(name) ?? 0) + (timeDeltas[i] ?? 0));
  }
}
const pct = (x) => `${((100 * x) / total).toFixed(1).padStart(5)}%`;
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`);
console.log('self time:');
[...selfByFn.entries()]
  .filter(([name]) => !filter || name.includes(filter))
  .sort((a, b) => b[1] - a[1])
  .slice(0, top)
  .forEach(([name, t]) => console.log(`  ${pct(t)}  ${(t / 1000).toFixed(0).padStart(7)} ms  ${name}`));
console.log('inclusive time:');
[...totalByFn.entries()]
  .filter(([name]) => !filter || name.includes(filter))
  .sort((a, b) => b[1] - a[1])
  .slice(0, top)
  .forEach(([name, t]) => console.log(`  ${pct(t)}  ${(t / 1000).toFixed(0).padStart(7)} ms  ${name}`));
