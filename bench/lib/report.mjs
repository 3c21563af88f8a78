// Output of a run: a readable table on stdout, and a hand-written SVG chart of every check against its target.

const fmtNumber = (x) => {
  if (x === null || x === undefined) return '-';
  if (typeof x !== 'number') return String(x);
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString('en-US');
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(3).replace(/\.?0+$/, '') || '0';
};

const pad = (s, n) => (s.length >= n ? s : s + ' '.repeat(n - s.length));

export function formatCheckValue(c) {
  if (c.value === null) return '-';
  return c.unit === 'x' ? `${fmtNumber(c.value)}x` : `${fmtNumber(c.value)} ${c.unit}`;
}

export function formatTarget(c) {
  return c.unit === 'x' ? `${c.comparator} ${fmtNumber(c.target)}x` : `${c.comparator} ${fmtNumber(c.target)} ${c.unit}`;
}

/** The whole run as text: one block per scenario (figures, baselines, ratios), then its checks. */
export function renderTable(report) {
  const lines = [];
  const { meta } = report;
  lines.push('');
  lines.push(`nestjs-write-back benchmark: ${meta.mode} mode, ${meta.date}`);
  lines.push(`machine: ${meta.machine.cpus} x ${meta.machine.cpuModel}, ${meta.machine.memoryGiB} GiB, node ${meta.machine.node}, ${meta.machine.postgres}`);
  lines.push(`load average at start / end: ${meta.loadAverage.start.join(' ')} / ${meta.loadAverage.end.join(' ')}`);
  lines.push(`command: ${meta.command}`);
  for (const s of report.scenarios) {
    lines.push('');
    const seconds = s.durationMs === undefined ? '' : `  [${(s.durationMs / 1000).toFixed(1)} s]`;
    lines.push(`== ${s.scenario}: ${s.title ?? ''}${seconds}`);
    if (s.status === 'skipped') lines.push(`   skipped: ${s.reason}`);
    if (s.status === 'error') lines.push(`   CRASHED: ${String(s.error).split('\n')[0]}`);
    if (s.rows?.length) {
      lines.push(`   ${pad('figure', 44)}${pad('value', 34)}${pad('baseline', 34)}ratio`);
      for (const r of s.rows) {
        const value = r.text ?? (r.value === undefined ? '' : `${fmtNumber(r.value)} ${r.unit ?? ''}`);
        const baseline = r.baselineText ?? (r.baseline === undefined ? '' : `${fmtNumber(r.baseline)} ${r.baselineUnit ?? r.unit ?? ''}`);
        const ratio = r.ratio === undefined || r.ratio === null ? '' : `${fmtNumber(r.ratio)}x`;
        lines.push(`   ${pad(r.figure, 44)}${pad(value, 34)}${pad(baseline, 34)}${ratio}`);
      }
    }
    for (const c of s.checks ?? []) {
      const verdict = c.skipped ? 'SKIP' : c.pass ? 'PASS' : 'FAIL';
      lines.push(`   [${verdict}] ${pad(c.label, 58)} ${pad(formatCheckValue(c), 16)} target ${formatTarget(c)}`);
    }
    for (const note of s.notes ?? []) lines.push(`   note: ${note}`);
  }
  const checks = report.scenarios.flatMap((s) => s.checks ?? []).filter((c) => !c.skipped);
  lines.push('');
  lines.push(
    `summary: ${checks.filter((c) => c.pass).length} of ${checks.length} targets met` +
      (report.meta.mode === 'quick' ? ' (quick mode: informational, never fails)' : '') +
      `; total ${(report.meta.durationMs / 1000).toFixed(1)} s`,
  );
  return lines.join('\n');
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * A horizontal bar per check. Each bar is the check's score (value / target for "at least" targets, target /
 * value for "at most" ones), so the target is the same vertical line for all: a bar that crosses it passes.
 */
export function renderSvg(report) {
  const rows = report.scenarios.flatMap((s) =>
    (s.checks ?? []).map((c) => ({ ...c, scenario: s.scenario })).concat(
      s.status === 'skipped' && !(s.checks ?? []).length ? [{ label: `${s.scenario}: ${s.reason}`, skipped: true }] : [],
    ),
  );
  const left = 360;
  const barWidth = 400;
  const right = 250;
  const rowH = 26;
  const top = 92;
  const width = left + barWidth + right;
  const height = top + rows.length * rowH + 40;
  const targetX = left + barWidth / 2; // score 1
  const { meta } = report;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  out.push(`<text x="16" y="24" font-size="16" font-weight="bold">nestjs-write-back: ${esc(meta.mode)} benchmark, ${esc(meta.date)}</text>`);
  out.push(`<text x="16" y="44" fill="#444">${esc(`${meta.machine.cpus} x ${meta.machine.cpuModel}, node ${meta.machine.node}, ${meta.machine.postgres.split(' on ')[0]}; load average ${meta.loadAverage.start[0]} -> ${meta.loadAverage.end[0]}`)}</text>`);
  out.push(`<text x="16" y="62" fill="#444">${esc(`command: ${meta.command}`)}</text>`);
  out.push(`<text x="16" y="80" fill="#666" font-size="11">bar = fraction of target reached (value/target, or target/value for limits); the line is the target; bars are capped at 2x</text>`);
  out.push(`<line x1="${targetX}" y1="${top - 6}" x2="${targetX}" y2="${top + rows.length * rowH}" stroke="#333" stroke-dasharray="4 3"/>`);
  out.push(`<text x="${targetX}" y="${top + rows.length * rowH + 16}" text-anchor="middle" fill="#333">target</text>`);
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    out.push(`<text x="${left - 8}" y="${y + 15}" text-anchor="end">${esc(r.label.length > 58 ? `${r.label.slice(0, 57)}…` : r.label)}</text>`);
    if (r.skipped) {
      out.push(`<rect x="${left}" y="${y + 4}" width="${barWidth}" height="${rowH - 10}" fill="#eeeeee"/>`);
      out.push(`<text x="${left + 8}" y="${y + 15}" fill="#777">skipped</text>`);
      return;
    }
    const score = Math.min(2, Math.max(0, r.score ?? 0));
    const w = Math.max(1, (score / 2) * barWidth);
    const color = r.pass ? '#2e7d32' : '#c62828';
    out.push(`<rect x="${left}" y="${y + 4}" width="${w.toFixed(1)}" height="${rowH - 10}" fill="${color}" opacity="0.85"/>`);
    if ((r.score ?? 0) > 2) out.push(`<text x="${left + barWidth - 4}" y="${y + 15}" text-anchor="end" fill="#fff" font-weight="bold">»</text>`);
    out.push(`<text x="${left + barWidth + 8}" y="${y + 15}">${esc(`${formatCheckValue(r)}  (target ${formatTarget(r)})`)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}
