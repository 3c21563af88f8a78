import { Controller, Get, HttpCode, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import { WriteBackService, type FlushReport, type WriteBackStats } from '../write-back/index.js';
import { OperatorRoutes } from './api-token.guard.js';
import { ErrorResponse, FlushReportResponse, StatsResponse, UNAUTHORIZED, UNSUPPORTED_MEDIA_TYPE } from './api-schemas.js';
import { optionalInteger } from './http-params.js';

/** `POST /admin/flush` waits at most this long unless `?timeoutMs=` says otherwise. */
export const DEFAULT_FLUSH_TIMEOUT_MS = 30_000;

/**
 * Operator routes, outside the key namespace (`/kv/:key` takes every key, `_stats` and `_flush` included). With
 * `API_TOKEN` set, each needs `Authorization: Bearer <token>`, reads included.
 */
@ApiTags('admin')
@OperatorRoutes()
@Controller('admin')
export class AdminController {
  constructor(private readonly writeBack: WriteBackService) {}

  /** Persists everything dirty now; 503 if it takes longer than `timeoutMs` (the entries stay queued). */
  @Post('flush')
  @HttpCode(200)
  @ApiOperation({ summary: 'Flush every dirty entry now', description: 'Resolves once each entry that was dirty is committed or dead-lettered.' })
  @ApiQuery({ name: 'timeoutMs', required: false, type: 'integer', minimum: 1, maximum: 3_600_000, description: `Default ${DEFAULT_FLUSH_TIMEOUT_MS}.` })
  @ApiResponse({ status: 200, type: FlushReportResponse, description: 'The flush report.' })
  @ApiResponse({ status: 400, type: ErrorResponse, description: 'Bad `timeoutMs`.' })
  @ApiResponse(UNAUTHORIZED)
  @ApiResponse(UNSUPPORTED_MEDIA_TYPE)
  @ApiResponse({ status: 503, type: ErrorResponse, description: 'Not done within `timeoutMs` (the entries stay queued), or shutting down.' })
  flush(@Query('timeoutMs') timeoutMs?: unknown): Promise<FlushReport> {
    return this.writeBack.flush({ timeoutMs: optionalInteger('timeoutMs', timeoutMs, 1, 3_600_000) ?? DEFAULT_FLUSH_TIMEOUT_MS });
  }

  /** Counters and gauges of the write-back cache (no I/O). */
  @Get('stats')
  @ApiOperation({ summary: 'Counters and gauges of the cache', description: 'No I/O; the same figures as the write_back_* metrics.' })
  @ApiResponse({ status: 200, type: StatsResponse })
  @ApiResponse(UNAUTHORIZED)
  stats(): WriteBackStats {
    return this.writeBack.stats();
  }
}
