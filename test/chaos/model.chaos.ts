import { describeModelCheck } from '../support/model-check.js';

/**
 * The model-checked history at chaos size: many random interleavings of set / delete / get / flush with cut
 * connections, outages, restores and latency, each on a fresh schema, checked against a Map (see
 * test/support/model-check.ts). A failure prints the seed and path that reproduce it.
 */
describeModelCheck('chaos: model-checked history (fast-check)', 'chaos', { numRuns: 200, maxOps: 60, timeLimitMs: 150_000 }, 300_000);
