import { afterAll, beforeAll, describe, it } from 'vitest';
import { databaseUrl } from '../support/e2e.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { checkModel } from './support/model.js';

/**
 * The model-checked history at chaos size: many random interleavings of set / delete / get / flush with cut
 * connections, outages, restores and latency, each on a fresh schema, checked against a Map (see
 * support/model.ts). A failure prints the seed and path that reproduce it.
 */
describe('chaos: model-checked history (fast-check)', () => {
  let proxy: TcpProxy;
  beforeAll(async () => {
    proxy = await TcpProxy.start(databaseUrl());
  });
  afterAll(async () => {
    await proxy?.close();
  });

  it('every get reads the latest accepted write, and the table equals the model after the final flush', async () => {
    await checkModel(proxy, { numRuns: 200, maxOps: 60, timeLimitMs: 150_000 }, 'chaos');
  }, 300_000);
});
