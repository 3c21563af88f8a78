// Boots the compiled library (dist/) the way a user does: WriteBackModule.forRoot in a Nest application context.
import 'reflect-metadata';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { NestFactory } from '@nestjs/core';

/**
 * The compiled build under test: dist/ (what `npm run build` makes), or another build directory given in
 * BENCH_DIST (to compare a patched build against the current one, in the same harness).
 */
export const distDir = process.env.BENCH_DIST ? resolve(process.env.BENCH_DIST) : new URL('../../dist', import.meta.url).pathname;
export const distUrl = (relative) => pathToFileURL(resolve(distDir, relative)).href;

const { WriteBackModule, WriteBackService, resolveWriteBackOptions, WriteBackConfigError } = await import(distUrl('write-back/index.js'));

export { WriteBackService, resolveWriteBackOptions, WriteBackConfigError };

/** Whether the build under test has the byte bounds (`maxDirtyBytes`, `maxCleanBytes`); older builds refuse them. */
const hasByteBounds = (() => {
  try {
    resolveWriteBackOptions({ url: 'postgres://bench/bench', maxDirtyBytes: 2 ** 40, maxCleanBytes: 2 ** 40 });
    return true;
  } catch {
    return false;
  }
})();

/**
 * The byte bounds lifted out of the way, for a scenario that holds more entries than their defaults allow (1M
 * entries of ~250 characters) and measures the entry-count regime; {} for a build without them, so A/B runs
 * against an older build (BENCH_DIST) measure the same thing.
 */
export const noByteBounds = hasByteBounds ? { maxDirtyBytes: 2 ** 40, maxCleanBytes: 2 ** 40 } : {};

/**
 * Module options every scenario's service gets on top of its own (JSON in BENCH_SERVICE_OPTIONS), to compare a
 * setting in the same harness: `BENCH_SERVICE_OPTIONS='{"flushScaleUpLagMs":0}' node bench/run.mjs --only=set`.
 */
export const serviceOverrides = process.env.BENCH_SERVICE_OPTIONS ? JSON.parse(process.env.BENCH_SERVICE_OPTIONS) : {};

let schemaCounter = 0;
/** A fresh schema name: every scenario (and step) gets its own write_back_entries table. */
export function freshSchema(tag) {
  return `bench_${tag}_${process.pid}_${schemaCounter++}`;
}

/**
 * A Nest logger that keeps warnings and errors (printed to stderr, counted in the result) and drops the rest.
 * `expect(pattern)` silences an error the benchmark causes on purpose (an abandoned drain at close).
 */
export class BenchLogger {
  warnings = [];
  errors = [];
  expected = [];
  log() {}
  debug() {}
  verbose() {}
  fatal(message, ...rest) {
    this.error(message, ...rest);
  }
  warn(message, context) {
    this.warnings.push(`${context ?? ''}: ${message}`);
    if (this.warnings.length <= 5) process.stderr.write(`[nest warn] ${context ?? ''}: ${message}\n`);
  }
  error(message, ...rest) {
    const text = String(message);
    if (this.expected.some((re) => re.test(text))) return;
    this.errors.push(text);
    if (this.errors.length <= 5) process.stderr.write(`[nest error] ${text} ${rest.filter((r) => typeof r === 'string').join(' ')}\n`);
  }
  expect(pattern) {
    this.expected.push(pattern);
  }
}

/**
 * Starts `WriteBackModule.forRoot(options)` on `url` in a fresh schema. Returns the service, the Nest context and
 * a close() that shuts it down (drain included, bounded by shutdownTimeoutMs).
 */
export async function startService(url, options = {}, tag = 'svc') {
  const logger = new BenchLogger();
  const schema = options.schema ?? freshSchema(tag);
  const moduleOptions = { url, schema, shutdownTimeoutMs: 2000, ...options, ...serviceOverrides };
  const app = await NestFactory.createApplicationContext(WriteBackModule.forRoot(moduleOptions), {
    logger,
    abortOnError: false,
  });
  app.enableShutdownHooks();
  await app.init();
  const service = app.get(WriteBackService);
  let closed = false;
  return {
    app,
    service,
    schema,
    logger,
    options: moduleOptions,
    /** Closes without waiting for a full drain (the bench does not need what is left). */
    async close({ abandon = true } = {}) {
      if (closed) return;
      closed = true;
      if (abandon) logger.expect(/Shutdown drain could not flush/);
      await app.close();
    },
  };
}
