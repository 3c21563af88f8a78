import { describe, expect, it } from 'vitest';
import { notifyPayloads } from '../../src/write-back/store/write-back.store.js';

const item = (key: string, version = 1_796_000_000_000_000) => ({ key, json: '1', version, rank: 1 });

describe('notifyPayloads', () => {
  it('names every key and version, in payloads that stay under 8000 bytes with their header', () => {
    const keys = Array.from({ length: 1000 }, (_, i) => `${'é-long-key-'.repeat(30)}"${i}`);
    const payloads = notifyPayloads(keys.map((k, i) => item(k, i + 1)), 24);
    expect(payloads.length).toBeGreaterThan(30);
    const named: unknown[] = [];
    for (const payload of payloads) {
      expect(Buffer.byteLength(payload) + 24).toBeLessThan(8000);
      named.push(...(JSON.parse(payload) as unknown[]));
    }
    expect(named).toEqual(keys.flatMap((k, i) => [k, i + 1]));
  });

  it('a key too long to be named in one payload is announced as "*"', () => {
    expect(notifyPayloads([item('a'), item('x'.repeat(9000)), item('b')], 24)).toEqual([
      '["a",1796000000000000,"b",1796000000000000]',
      '*',
    ]);
    expect(notifyPayloads([], 24)).toEqual([]);
  });
});
