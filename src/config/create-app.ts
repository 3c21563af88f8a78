import type { LoggerService, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { AppModule } from '../app.module.js';
import { KeepAliveDrain } from '../kv/keep-alive-drain.js';
import { getWriteBackOptionsToken, type ResolvedWriteBackOptions } from '../write-back/index.js';
import { hardenHttpServer } from './http-server.js';
import { setupOpenApi } from './openapi.js';

const MIN_BODY_LIMIT_BYTES = 2 * 1024 * 1024;

/**
 * Creates the demo application (not yet listening): the JSON body parser accepts any JSON value (strings,
 * numbers, arrays, objects, null), up to twice `maxValueBytes` (at least 2 MiB). Start-up errors are thrown,
 * not turned into `process.abort()`. The OpenAPI document is served at `/docs` (UI) and `/docs-json`. Once
 * shutdown begins every answer closes its connection ({@link KeepAliveDrain}). No `X-Powered-By`; a request
 * line long enough for any valid key is read, and what Node refuses before routing still gets a JSON error body
 * ({@link hardenHttpServer}).
 */
export async function createApp(options: { logger?: LoggerService | LogLevel[] | false } = {}): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule, {
    bodyParser: false,
    // Kept so that an empty body (which the JSON parser turns into {}) can be told apart: see JsonBody.
    rawBody: true,
    abortOnError: false,
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  const { maxValueBytes, maxKeyLength } = app.get<ResolvedWriteBackOptions>(getWriteBackOptionsToken());
  // The framework is nobody's business (and a hint for scanners).
  app.disable('x-powered-by');
  hardenHttpServer(app.getHttpServer(), maxKeyLength);
  app.use(app.get(KeepAliveDrain).middleware);
  // JSON values, and JSON Merge Patches (PATCH /kv/:key) under their own media type.
  app.useBodyParser('json', {
    strict: false,
    limit: Math.max(MIN_BODY_LIMIT_BYTES, 2 * maxValueBytes),
    type: ['application/json', 'application/merge-patch+json'],
  });
  setupOpenApi(app);
  return app;
}
