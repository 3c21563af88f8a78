import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { MetricsController } from '../../src/kv/metrics.controller.js';
import { WriteBackMetrics } from '../../src/write-back/index.js';
import { startWriteBack, type WriteBackTestApp } from '../support/write-back-app.js';

function sample(text: string, metric: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${metric}{`) || l.startsWith(`${metric} `));
  if (line === undefined) throw new Error(`metric ${metric} not exposed`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('Prometheus metrics', () => {
  let t: WriteBackTestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('GET /metrics exposes the stats as write_back_* counters, gauges and histograms that move with the work', async () => {
    t = await startWriteBack({}, { controllers: [MetricsController] });
    await t.app.listen(0, '127.0.0.1');
    const base = `http://127.0.0.1:${(t.app.getHttpServer().address() as AddressInfo).port}`;
    const scrape = async () => {
      const response = await fetch(`${base}/metrics`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toContain('text/plain');
      return response.text();
    };
    const before = await scrape();
    expect(sample(before, 'write_back_writes_total')).toBe(0);
    expect(before).toContain('process_cpu_user_seconds_total');

    for (let i = 0; i < 40; i++) await t.service.set(`m${i % 10}`, { i });
    await t.service.get('m1');
    const dirty = await scrape();
    expect(sample(dirty, 'write_back_writes_total')).toBe(40);
    expect(sample(dirty, 'write_back_coalesced_total')).toBe(30);
    expect(sample(dirty, 'write_back_dirty_entries')).toBe(10);
    expect(sample(dirty, 'write_back_hits_total')).toBe(1);
    expect(sample(dirty, 'write_back_set_latency_seconds_count')).toBe(5);
    expect(dirty).toContain('instance_name="default"');

    await t.service.flush();
    const flushed = await scrape();
    expect(sample(flushed, 'write_back_dirty_entries')).toBe(0);
    expect(sample(flushed, 'write_back_flushed_entries_total')).toBe(10);
    expect(sample(flushed, 'write_back_flushes_total')).toBe(1);
    expect(sample(flushed, 'write_back_listener_up')).toBe(1);
    expect(sample(flushed, 'write_back_invalidations_total')).toBe(0);
    expect(sample(flushed, 'write_back_flush_duration_seconds_count')).toBe(1);
    expect(sample(flushed, 'write_back_circuit_open')).toBe(0);
    expect(sample(flushed, 'write_back_flush_workers')).toBe(0);
    expect(t.app.get(WriteBackMetrics)).toBeInstanceOf(WriteBackMetrics);
  });
});
