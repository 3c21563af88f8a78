import { swcPlugin } from './vitest.swc.js';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  plugins: [swcPlugin()],
  test: {
    include: ['test/**/*.spec.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
