import { Controller, Delete, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiParam, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import { WriteBackService, type WriteBackDeadLetter } from '../write-back/index.js';
import { DeadLetterResponse, ErrorResponse, ReplayResponse, UNAUTHORIZED, UNSUPPORTED_MEDIA_TYPE } from './api-schemas.js';
import { OperatorRoutes } from './api-token.guard.js';
import { deadLetterId, optionalInteger, optionalString } from './http-params.js';

const ID_PARAM = { name: 'id', description: 'The dead-letter id (a positive integer).', example: '1' } as const;
const BAD_ID = { status: 400, type: ErrorResponse, description: 'Not a dead-letter id.' } as const;
const NOT_FOUND = { status: 404, type: ErrorResponse, description: 'No dead letter with this id.' } as const;

/** Rows Postgres kept rejecting: list them, replay one (re-queue it as a write) or discard it. */
@ApiTags('dead-letters')
@OperatorRoutes()
@Controller('admin/dead-letters')
export class DeadLettersController {
  constructor(private readonly writeBack: WriteBackService) {}

  /** Oldest first; page with `?afterId=` (the last id seen), filter with `?key=`, `?limit=` 1-1000 (default 100). */
  @Get()
  @ApiOperation({ summary: 'List dead letters', description: 'Rows Postgres rejected permanently (22xxx, 23xxx, 54000) after maxRetries; oldest first.' })
  @ApiQuery({ name: 'limit', required: false, type: 'integer', minimum: 1, maximum: 1000, description: 'Default 100.' })
  @ApiQuery({ name: 'afterId', required: false, type: 'string', description: 'Page on: the last id seen.' })
  @ApiQuery({ name: 'key', required: false, type: 'string', description: 'Only the dead letters of this key.' })
  @ApiResponse({ status: 200, type: DeadLetterResponse, isArray: true })
  @ApiResponse({ status: 400, type: ErrorResponse, description: 'Bad limit, afterId or key.' })
  @ApiResponse(UNAUTHORIZED)
  list(@Query('limit') limit?: unknown, @Query('afterId') afterId?: unknown, @Query('key') key?: unknown): Promise<WriteBackDeadLetter[]> {
    return this.writeBack.listDeadLetters({
      limit: optionalInteger('limit', limit, 1, 1000),
      afterId: afterId === undefined ? undefined : deadLetterId('afterId', afterId),
      key: optionalString('key', key),
    });
  }

  /**
   * Writes the dead letter again at its version and removes it once Postgres took it: `outcome` is `committed`,
   * `dead-lettered` (rejected again: a new dead letter holds it) or `superseded` (a newer write exists).
   */
  @Post(':id/replay')
  @HttpCode(200)
  @ApiOperation({ summary: 'Replay a dead letter', description: 'Writes it again at its version (the version guard keeps newer rows), then removes it.' })
  @ApiParam(ID_PARAM)
  @ApiResponse({ status: 200, type: ReplayResponse })
  @ApiResponse(BAD_ID)
  @ApiResponse(NOT_FOUND)
  @ApiResponse(UNAUTHORIZED)
  @ApiResponse(UNSUPPORTED_MEDIA_TYPE)
  @ApiResponse({ status: 503, type: ErrorResponse, description: 'Shutting down.' })
  replay(@Param('id') id: string): Promise<{ requeued: boolean; outcome: string }> {
    return this.writeBack.replayDeadLetter(deadLetterId('id', id));
  }

  /** Deletes the dead letter for good; 404 if there is no such id. */
  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Discard a dead letter' })
  @ApiParam(ID_PARAM)
  @ApiResponse({ status: 204, description: 'Deleted.' })
  @ApiResponse(BAD_ID)
  @ApiResponse(NOT_FOUND)
  @ApiResponse(UNAUTHORIZED)
  @ApiResponse(UNSUPPORTED_MEDIA_TYPE)
  async discard(@Param('id') id: string): Promise<void> {
    await this.writeBack.discardDeadLetter(deadLetterId('id', id));
  }
}
