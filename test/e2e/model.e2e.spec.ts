import { afterAll, beforeAll, describe, it } from 'vitest';
import { checkModel } from '../chaos/support/model.js';
import { databaseUrl } from '../support/e2e.js';
import { TcpProxy } from '../support/tcp-proxy.js';

/**
 * A small, fast version of the chaos suite's model-checked history (test/chaos/model.chaos.ts): a few random
 * histories of set / delete / get / flush with injected connection faults, checked against a Map. A failure
 * prints the seed and path that reproduce it (WRITE_BACK_MODEL_SEED, WRITE_BACK_MODEL_PATH).
 */
describe('model-checked history (fast-check, small)', () => {
  let proxy: TcpProxy;
  beforeAll(async () => {
    proxy = await TcpProxy.start(databaseUrl());
  });
  afterAll(async () => {
    await proxy?.close();
  });

  it('every get reads the latest accepted write, and the table equals the model after the final flush', async () => {
    await checkModel(proxy, { numRuns: 25, maxOps: 30, timeLimitMs: 20_000 }, 'e2e');
  }, 60_000);
});
