import { applyDecorators } from '@nestjs/common';
import { ApiBearerAuth, ApiParam, ApiQuery, ApiResponse } from '@nestjs/swagger';
import { ErrorResponse, UNAUTHORIZED } from './api-schemas.js';

/** OpenAPI of the `:key` path parameter of every `/kv` route. */
export const KEY_PARAM = {
  name: 'key',
  description: 'Any non-empty string up to `maxKeyLength` (default 512) UTF-16 units; URL-encode it.',
  example: 'user:42',
} as const;

/**
 * OpenAPI shared by every `/kv` write (PUT, DELETE, POST increment, PATCH): the key, `?priority` and
 * `?writeThrough`, 204 once accepted, the token, 502 when a write-through fails, 503 under backpressure. Each route
 * adds its own body and its own 400 / 415.
 */
export function KvWriteDocs(): MethodDecorator {
  return applyDecorators(
    ApiParam(KEY_PARAM),
    ApiQuery({
      name: 'priority',
      required: false,
      enum: ['high', 'normal', 'low'],
      description: 'Flush order; a `high` write starts a flush within `highPriorityDelayMs`. Default `normal`.',
    }),
    ApiQuery({
      name: 'writeThrough',
      required: false,
      type: 'boolean',
      description: 'Answer only once the change is committed to Postgres (502 if Postgres rejects it).',
    }),
    ApiResponse({ status: 204, description: 'Accepted under the configured durability.' }),
    ApiResponse(UNAUTHORIZED),
    ApiBearerAuth(),
    ApiResponse({ status: 502, type: ErrorResponse, description: 'With `writeThrough=true`: Postgres did not commit the change.' }),
    ApiResponse({
      status: 503,
      type: ErrorResponse,
      description: 'Backpressure (`maxDirtyEntries` or `maxDirtyBytes` reached, `WriteBackOverloadedError`) or shutting down; retry after `Retry-After`.',
    }),
  );
}
