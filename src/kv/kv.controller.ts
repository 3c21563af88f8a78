import {
  BadRequestException,
  Controller,
  Delete,
  Get,
  Header,
  HttpCode,
  NotFoundException,
  Param,
  Put,
} from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import { WriteBackService, type WriteBackSetOptions } from '../write-back/index.js';
import { ANY_JSON_SCHEMA, ErrorResponse, UNAUTHORIZED, UNSUPPORTED_MEDIA_TYPE } from './api-schemas.js';
import { WriteOptionsQuery } from './http-params.js';
import { JsonBody } from './json-body.decorator.js';
import { KEY_PARAM, KvWriteDocs } from './kv-write.docs.js';

const BAD_INPUT = { status: 400, type: ErrorResponse, description: 'Bad key, body or query parameter (the message says which).' } as const;
/**
 * A key-value API over {@link WriteBackService}. Values are any JSON; writes answer 204 once accepted (in
 * memory, or committed with `?writeThrough=true`). Every key is a key: the operator routes live under `/admin`.
 */
@ApiTags('kv')
@Controller('kv')
export class KvController {
  constructor(private readonly writeBack: WriteBackService) {}

  /** `/kv/` without a key: a 400 that says so (Express would otherwise answer 404 "Cannot PUT /kv/"). */
  @Get()
  @ApiOperation({ summary: 'No key given (always 400)' })
  @ApiResponse({ status: 400, type: ErrorResponse, description: 'Keys must not be empty.' })
  getWithoutKey(): never {
    throw missingKey();
  }

  @Put()
  @ApiOperation({ summary: 'No key given (always 400)' })
  @ApiResponse({ status: 400, type: ErrorResponse, description: 'Keys must not be empty.' })
  @ApiResponse(UNAUTHORIZED)
  @ApiBearerAuth()
  @ApiResponse(UNSUPPORTED_MEDIA_TYPE)
  putWithoutKey(): never {
    throw missingKey();
  }

  @Delete()
  @ApiOperation({ summary: 'No key given (always 400)' })
  @ApiResponse({ status: 400, type: ErrorResponse, description: 'Keys must not be empty.' })
  @ApiResponse(UNAUTHORIZED)
  @ApiBearerAuth()
  @ApiResponse(UNSUPPORTED_MEDIA_TYPE)
  deleteWithoutKey(): never {
    throw missingKey();
  }

  /** The value as JSON (whatever its type: a string value is sent as a JSON string), or 404. */
  @Get(':key')
  @Header('Content-Type', 'application/json; charset=utf-8')
  @ApiOperation({
    summary: 'Read a value',
    description: 'Memory first (your own writes, before any flush); on a miss one load from Postgres. A pending delete reads as 404.',
  })
  @ApiParam(KEY_PARAM)
  @ApiResponse({ status: 200, description: 'The stored JSON value.', schema: ANY_JSON_SCHEMA })
  @ApiResponse(BAD_INPUT)
  @ApiResponse({ status: 404, type: ErrorResponse, description: 'No such key.' })
  async get(@Param('key') key: string): Promise<string> {
    const value = await this.writeBack.get(key);
    if (value === undefined) throw new NotFoundException(`Key "${key}" not found.`);
    return JSON.stringify(value);
  }

  /** Stores the JSON body under `key`; `?priority=high|normal|low`, `?writeThrough=true`. */
  @Put(':key')
  @HttpCode(204)
  @ApiOperation({
    summary: 'Write a value',
    description: 'Accepted in memory (and the write-ahead log, with wal-* durability) and flushed in the background.',
  })
  @KvWriteDocs()
  @ApiBody({ required: true, description: 'The value, sent with `Content-Type: application/json`.', schema: ANY_JSON_SCHEMA })
  @ApiResponse(BAD_INPUT)
  @ApiResponse({ status: 413, type: ErrorResponse, description: 'Body over the parser limit (twice maxValueBytes, at least 2 MiB).' })
  @ApiResponse(UNSUPPORTED_MEDIA_TYPE)
  async put(
    @Param('key') key: string,
    @JsonBody() value: unknown,
    @WriteOptionsQuery() options: WriteBackSetOptions,
  ): Promise<void> {
    if (value === undefined) {
      throw new BadRequestException(
        'The request body must be a JSON value sent with "Content-Type: application/json" (it is empty, or holds only a byte-order mark or white space).',
      );
    }
    await this.writeBack.set(key, value, options);
  }

  /** Deletes `key` (a tombstone, flushed like a write); same query options as PUT. */
  @Delete(':key')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a value', description: 'A versioned tombstone, flushed like a write; reads answer 404 at once.' })
  @KvWriteDocs()
  @ApiResponse(BAD_INPUT)
  @ApiResponse(UNSUPPORTED_MEDIA_TYPE)
  async delete(
    @Param('key') key: string,
    @WriteOptionsQuery() options: WriteBackSetOptions,
  ): Promise<void> {
    await this.writeBack.delete(key, options);
  }
}

function missingKey(): BadRequestException {
  return new BadRequestException('The key is missing: use /kv/<key>; a key is a non-empty string (URL-encoded).');
}
