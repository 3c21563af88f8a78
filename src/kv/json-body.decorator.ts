import { createParamDecorator, type ExecutionContext } from '@nestjs/common';

/**
 * The parsed JSON request body, or `undefined` when there is none. An empty body parses to `{}` in the JSON body
 * parser, so the raw bytes (kept by `NestFactory.create(..., { rawBody: true })`) tell "no body" apart.
 */
export const JsonBody = createParamDecorator((_data: unknown, context: ExecutionContext): unknown => {
  const request = context.switchToHttp().getRequest<{ body?: unknown; rawBody?: Buffer }>();
  if (request.rawBody === undefined || request.rawBody.length === 0) return undefined;
  return request.body;
});
