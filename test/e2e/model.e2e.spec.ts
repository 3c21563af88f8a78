import { describeModelCheck } from '../support/model-check.js';

/**
 * A small, fast version of the chaos suite's model-checked history (test/chaos/model.chaos.ts): a few random
 * histories of set / delete / get / flush with injected connection faults, checked against a Map. A failure
 * prints the seed and path that reproduce it (WRITE_BACK_MODEL_SEED, WRITE_BACK_MODEL_PATH).
 */
describeModelCheck('model-checked history (fast-check, small)', 'e2e', { numRuns: 25, maxOps: 30, timeLimitMs: 20_000 }, 60_000);
