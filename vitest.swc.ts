import swc from 'unplugin-swc';

/**
 * Nest resolves constructor dependencies from decorator metadata, which esbuild does not emit: both vitest
 * configs (vitest.config.ts, vitest.chaos.config.ts) compile through swc with legacy decorators and metadata.
 */
export const swcPlugin = () =>
  swc.vite({
    jsc: {
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
      target: 'es2023',
    },
  });
