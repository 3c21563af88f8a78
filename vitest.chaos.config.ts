import { swcPlugin } from './vitest.swc.js';
import { defineConfig } from 'vitest/config';

/**
 * `npm run test:chaos`: the fault and load scenarios of test/chaos (files named *.chaos.ts, so the default
 * `npm test`, which includes only *.spec.ts, never runs them). One file at a time: each scenario loads the
 * machine and some of them touch the Postgres server itself. Forked workers with `--expose-gc`, so the
 * backpressure scenario can measure the heap after a full collection.
 */
export default defineConfig({
  plugins: [swcPlugin()],
  test: {
    include: ['test/chaos/**/*.chaos.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    execArgv: ['--expose-gc'],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 120_000,
    // Each scenario prints one summary line; keep it visible.
    silent: false,
  },
});
