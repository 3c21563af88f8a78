// Shared helpers of the benchmark: values, keys, histograms, timing, small maths.
import { createHistogram, performance } from 'node:perf_hooks';
import { setImmediate as immediate, setTimeout as sleepMs } from 'node:timers/promises';

export { performance };

/** Yields to the event loop (timers and I/O run), as a server between two requests would. */
export const yieldLoop = () => immediate();
export const sleep = (ms) => sleepMs(ms);

const CITIES = ['Amsterdam', 'Berlin', 'Lisbon', 'Madrid', 'Oslo', 'Paris', 'Prague', 'Vienna'];
const PLANS = ['free', 'starter', 'business', 'enterprise'];

/**
 * A realistic ~200-byte JSON document (a customer record): numbers, strings, a boolean, an array and a nested
 * object. JSON.stringify of it is 200-225 characters.
 */
export function makeValue(i) {
  return {
    id: i,
    name: `Customer ${i}`,
    email: `customer${i}@example.com`,
    active: i % 3 !== 0,
    plan: PLANS[i % 4],
    balance: Math.round(i * 1373.1) / 100,
    tags: ['retail', 'eu', i % 2 === 0 ? 'vip' : 'std'],
    address: { city: CITIES[i % 8], zip: String(10000 + (i % 89999)) },
    updatedAt: new Date(1767225600000 + i * 1000).toISOString(),
  };
}

export const VALUE_POOL_SIZE = 4096;
/** Pre-built values, so neither side of a comparison pays for building the caller's object. */
export const VALUES = Array.from({ length: VALUE_POOL_SIZE }, (_, i) => makeValue(100_000 + i * 37));
export const VALUE_JSON = VALUES.map((v) => JSON.stringify(v));
export const meanValueBytes = Math.round(VALUE_JSON.reduce((s, j) => s + Buffer.byteLength(j), 0) / VALUE_JSON.length);

/** `count` keys like `user:00012345` (flat strings, built before any timing starts). */
export function makeKeys(count, prefix = 'user:') {
  const keys = new Array(count);
  for (let i = 0; i < count; i++) keys[i] = `${prefix}${String(i).padStart(8, '0')}`;
  return keys;
}

/** A fixed pseudo-random permutation-ish order over `n` (LCG), same on both sides of a comparison. */
export function shuffledIndexes(n, length, seed = 12345) {
  const out = new Uint32Array(length);
  let x = seed >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x % n;
  }
  return out;
}

/** A histogram of nanoseconds (perf_hooks, 3 significant figures). */
export function nsHistogram() {
  return createHistogram({ lowest: 1, highest: 60e9, figures: 3 });
}

/** p50/p99/p999/max of a nanosecond histogram, in microseconds. */
export function usSummary(h) {
  if (h.count === 0) return { count: 0, mean: null, p50: null, p99: null, p999: null, max: null };
  const us = (ns) => round(ns / 1000, 2);
  return { count: h.count, mean: us(h.mean), p50: us(h.percentile(50)), p99: us(h.percentile(99)), p999: us(h.percentile(99.9)), max: us(h.max) };
}

/** p50/p99/p999/max of a nanosecond histogram, in milliseconds. */
export function msSummary(h) {
  if (h.count === 0) return { count: 0, p50: null, p99: null, p999: null, max: null };
  const ms = (ns) => round(ns / 1e6, 3);
  return { count: h.count, p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), p999: ms(h.percentile(99.9)), max: ms(h.max) };
}

export function round(x, digits = 3) {
  if (x === null || x === undefined || !Number.isFinite(x)) return x ?? null;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function median(values) {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Percentile of a plain array of numbers (nearest rank). */
export function percentile(values, p) {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const idx = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[idx];
}

export function spread(values) {
  const v = values.filter((x) => Number.isFinite(x));
  if (v.length === 0) return null;
  return { min: Math.min(...v), median: median(v), max: Math.max(...v), n: v.length };
}

/**
 * A check against a target. `comparator` '>=' or '<='. `score` is how far along the target it is (>= 1 passes),
 * used by the chart so that ratios and latency limits share one axis.
 */
export function check(id, label, value, comparator, target, unit, extra = {}) {
  const ok = value !== null && value !== undefined && Number.isFinite(value);
  const pass = ok ? (comparator === '>=' ? value >= target : value <= target) : false;
  const score = !ok ? 0 : comparator === '>=' ? value / target : value === 0 ? Infinity : target / value;
  return { id, label, value: ok ? round(value, 4) : null, comparator, target, unit, pass, score: round(score, 4), ...extra };
}

export const gc = () => {
  if (typeof globalThis.gc !== 'function') throw new Error('run node with --expose-gc');
  globalThis.gc();
  globalThis.gc();
};

/** Heap used after two full collections. */
export function settledHeap() {
  gc();
  return process.memoryUsage().heapUsed;
}

export function log(...parts) {
  process.stderr.write(`[bench] ${parts.join(' ')}\n`);
}
