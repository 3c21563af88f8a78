import {
  BadRequestException,
  Controller,
  Delete,
  Get,
  Header,
  HttpCode,
  NotFoundException,
  Param,
  Post,
  Put,
  Query,
} from '@nestjs/common';
import { WriteBackService, type FlushReport, type WriteBackStats } from '../write-back/index.js';
import { optionalInteger, writeOptions } from './http-params.js';
import { JsonBody } from './json-body.decorator.js';

/** `POST /kv/_flush` waits at most this long unless `?timeoutMs=` says otherwise. */
export const DEFAULT_FLUSH_TIMEOUT_MS = 30_000;

/**
 * A key-value API over {@link WriteBackService}. Values are any JSON; writes answer 204 once accepted (in
 * memory, or committed with `?writeThrough=true`). The `_flush` and `_stats` routes are declared before `:key`.
 */
@Controller('kv')
export class KvController {
  constructor(private readonly writeBack: WriteBackService) {}

  /** Persists everything dirty now; 503 if it takes longer than `timeoutMs` (the entries stay queued). */
  @Post('_flush')
  @HttpCode(200)
  flush(@Query('timeoutMs') timeoutMs?: unknown): Promise<FlushReport> {
    return this.writeBack.flush({ timeoutMs: optionalInteger('timeoutMs', timeoutMs, 1, 3_600_000) ?? DEFAULT_FLUSH_TIMEOUT_MS });
  }

  /** Counters and gauges of the write-back cache (no I/O). */
  @Get('_stats')
  stats(): WriteBackStats {
    return this.writeBack.stats();
  }

  /** The value as JSON (whatever its type: a string value is sent as a JSON string), or 404. */
  @Get(':key')
  @Header('Content-Type', 'application/json; charset=utf-8')
  async get(@Param('key') key: string): Promise<string> {
    const value = await this.writeBack.get(key);
    if (value === undefined) throw new NotFoundException(`Key "${key}" not found.`);
    return JSON.stringify(value);
  }

  /** Stores the JSON body under `key`; `?priority=high|normal|low`, `?writeThrough=true`. */
  @Put(':key')
  @HttpCode(204)
  async put(
    @Param('key') key: string,
    @JsonBody() value: unknown,
    @Query('priority') priority?: unknown,
    @Query('writeThrough') writeThrough?: unknown,
  ): Promise<void> {
    if (value === undefined) {
      throw new BadRequestException('The request body must be a JSON value sent with "Content-Type: application/json".');
    }
    await this.writeBack.set(key, value, writeOptions(priority, writeThrough));
  }

  /** Deletes `key` (a tombstone, flushed like a write); same query options as PUT. */
  @Delete(':key')
  @HttpCode(204)
  async delete(
    @Param('key') key: string,
    @Query('priority') priority?: unknown,
    @Query('writeThrough') writeThrough?: unknown,
  ): Promise<void> {
    await this.writeBack.delete(key, writeOptions(priority, writeThrough));
  }
}
