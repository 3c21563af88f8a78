import { BadRequestException, Controller, Headers, HttpCode, Param, Patch, Post, UnsupportedMediaTypeException } from '@nestjs/common';
import { ApiBody, ApiConsumes, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { WriteBackService, type WriteBackSetOptions } from '../write-back/index.js';
import { ErrorResponse, UNSUPPORTED_MEDIA_TYPE } from './api-schemas.js';
import { WriteOptionsQuery } from './http-params.js';
import { JsonBody } from './json-body.decorator.js';
import { KvWriteDocs } from './kv-write.docs.js';

/**
 * Counters and partial updates: `POST /kv/:key/increment` (a JSON integer, or an object of integers for fields)
 * and `PATCH /kv/:key` (`application/merge-patch+json`, RFC 7396). Both change the stored value without reading
 * it, coalesce in memory, and are applied by Postgres exactly once (see the README, "Counters").
 */
@ApiTags('kv')
@Controller('kv')
export class KvDeltasController {
  constructor(private readonly writeBack: WriteBackService) {}

  @Post(':key/increment')
  @HttpCode(204)
  @ApiOperation({
    summary: 'Add to a counter',
    description: 'The body is an integer (the value is a JSON number; absent counts from 0) or an object of integers (fields of the stored object).',
  })
  @KvWriteDocs()
  @ApiBody({
    required: true,
    schema: { oneOf: [{ type: 'integer' }, { type: 'object', additionalProperties: { type: 'integer' } }], example: { views: 1 } },
  })
  @ApiResponse({ status: 400, type: ErrorResponse, description: 'Not an integer (or object of integers), or the key holds a value it cannot apply to.' })
  @ApiResponse(UNSUPPORTED_MEDIA_TYPE)
  async increment(
    @Param('key') key: string,
    @JsonBody() by: unknown,
    @WriteOptionsQuery() options: WriteBackSetOptions,
  ): Promise<void> {
    if (by === undefined) throw new BadRequestException('The request body must be a JSON integer or an object of integers.');
    await this.writeBack.increment(key, by as number | Record<string, number>, options);
  }

  @Patch(':key')
  @HttpCode(204)
  @ApiConsumes('application/merge-patch+json')
  @ApiOperation({
    summary: 'Change some fields (JSON Merge Patch)',
    description: 'RFC 7396: nested objects merge, null removes a member; fields not named are left as they are in Postgres.',
  })
  @KvWriteDocs()
  @ApiBody({ required: true, schema: { type: 'object', example: { lastSeenAt: '2026-11-30T12:00:00Z', away: null } } })
  @ApiResponse({ status: 400, type: ErrorResponse, description: 'Not a JSON object.' })
  @ApiResponse({ status: 415, type: ErrorResponse, description: 'Not sent as application/merge-patch+json.' })
  async merge(
    @Param('key') key: string,
    @JsonBody() patch: unknown,
    @Headers('content-type') contentType: string | undefined,
    @WriteOptionsQuery() options: WriteBackSetOptions,
  ): Promise<void> {
    // RFC 7396 has its own media type: a plain JSON body might be meant as a whole value (PUT).
    if (!/^application\/merge-patch\+json\s*(;|$)/i.test(contentType ?? '')) {
      throw new UnsupportedMediaTypeException('PATCH takes a JSON Merge Patch sent as "Content-Type: application/merge-patch+json".');
    }
    if (patch === undefined) throw new BadRequestException('The request body must be a JSON object sent as application/merge-patch+json.');
    await this.writeBack.merge(key, patch as Record<string, unknown>, options);
  }
}
