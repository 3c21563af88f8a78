// Scenario 5: heap bytes per entry at 1M entries (quick: 200k), dirty and then clean, against a raw Map of the
// same key -> JSON text. Needs --expose-gc (bench/run.mjs passes it).
import { VALUES, VALUE_POOL_SIZE, check, log, meanValueBytes, performance, round, settledHeap, yieldLoop } from '../lib/util.mjs';
import { noByteBounds, startService } from '../lib/service.mjs';

const POOL_MASK = VALUE_POOL_SIZE - 1;
const key = (i) => `user:${String(i).padStart(8, '0')}`;

export async function run(ctx) {
  const { quick, url } = ctx;
  const n = quick ? 200_000 : 1_000_000;

  // Raw baseline: Map<string, string> of the same keys and JSON texts, built the same way (keys made on the fly).
  log(`memory: raw Map of ${n} entries`);
  const h0 = settledHeap();
  let map = new Map();
  for (let i = 0; i < n; i++) map.set(key(i), JSON.stringify(VALUES[i & POOL_MASK]));
  const h1 = settledHeap();
  const rawPerEntry = (h1 - h0) / n;
  if (map.size !== n) throw new Error('baseline map is short');
  map = undefined;
  settledHeap();

  // The service: autoFlush off, so every entry stays dirty; then flushed, so every entry is clean.
  const svc = await startService(url, { autoFlush: false, maxDirtyEntries: n + 1000, maxEntries: n + 1000, shutdownTimeoutMs: 60_000, ...noByteBounds }, 'memory');
  const { service } = svc;
  // Warm the code paths on a few keys first, flushed and deleted from the count by measuring after them.
  for (let i = 0; i < 1000; i++) await service.set(`warm:${i}`, VALUES[i]);
  await service.flush();
  const h2 = settledHeap();
  log(`memory: ${n} dirty entries in the service`);
  for (let i = 0; i < n; i++) {
    await service.set(key(i), VALUES[i & POOL_MASK]);
    if ((i & 1023) === 1023) await yieldLoop();
  }
  const h3 = settledHeap();
  const dirtyPerEntry = (h3 - h2) / n;
  const s = service.stats();
  // Clean entries need every row flushed first (tens of seconds at 1M): full mode only.
  let flushMs = null;
  let report = null;
  let h4 = null;
  let cleanPerEntry = null;
  if (!quick) {
    log(`memory: flushing ${n} entries to make them clean`);
    const f0 = performance.now();
    report = await service.flush();
    flushMs = performance.now() - f0;
    h4 = settledHeap();
    cleanPerEntry = (h4 - h2) / n;
  }
  const after = service.stats();
  await svc.close({ abandon: !quick });

  const worst = Math.max(dirtyPerEntry, cleanPerEntry ?? 0);
  log(`memory: raw ${Math.round(rawPerEntry)} B, dirty ${Math.round(dirtyPerEntry)} B, clean ${cleanPerEntry === null ? '(full mode only)' : `${Math.round(cleanPerEntry)} B`} per entry`);
  return {
    title: 'heap per entry',
    metrics: {
      entries: n,
      valueBytes: meanValueBytes,
      method: 'process.memoryUsage().heapUsed after two global.gc() calls, before and after inserting n entries; keys built on the fly on both sides.',
      rawMapBytesPerEntry: Math.round(rawPerEntry),
      dirtyBytesPerEntry: Math.round(dirtyPerEntry),
      cleanBytesPerEntry: cleanPerEntry === null ? null : Math.round(cleanPerEntry),
      dirtyRatioToRaw: round(dirtyPerEntry / rawPerEntry, 2),
      cleanRatioToRaw: cleanPerEntry === null ? null : round(cleanPerEntry / rawPerEntry, 2),
      dirtyCount: s.dirty,
      cleanCount: after.cleanEntries,
      flush: report === null ? null : { ...report, rowsPerSec: Math.round((report.committed / flushMs) * 1000) },
      heapMiB: { beforeRaw: mib(h0), withRaw: mib(h1), beforeService: mib(h2), dirty: mib(h3), clean: h4 === null ? null : mib(h4) },
      errors: svc.logger.errors,
    },
    rows: [
      { figure: `dirty entries (${n / 1000}k)`, value: Math.round(dirtyPerEntry), unit: 'B/entry', baseline: Math.round(rawPerEntry), ratio: round(dirtyPerEntry / rawPerEntry, 2) },
      ...(cleanPerEntry === null
        ? [{ figure: 'clean entries', text: 'full mode only (needs every row flushed)' }]
        : [
            { figure: `clean entries (${n / 1000}k, after flush)`, value: Math.round(cleanPerEntry), unit: 'B/entry', baseline: Math.round(rawPerEntry), ratio: round(cleanPerEntry / rawPerEntry, 2) },
            { figure: '  flush() of all of them', text: `${(flushMs / 1000).toFixed(1)} s, ${Math.round((report.committed / flushMs) * 1000).toLocaleString('en-US')} rows/s` },
          ]),
    ],
    checks: [check('memory.perEntry', `heap per ~${meanValueBytes} B entry (${quick ? 'dirty' : 'worst of dirty/clean'})`, worst, '<=', 1024, 'B')],
  };
}

const mib = (b) => round(b / 2 ** 20, 1);
