import { Controller, Delete, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { WriteBackService, type WriteBackDeadLetter } from '../write-back/index.js';
import { deadLetterId, optionalInteger, optionalString } from './http-params.js';

/** Rows Postgres kept rejecting: list them, replay one (re-queue it as a write) or discard it. */
@Controller('dead-letters')
export class DeadLettersController {
  constructor(private readonly writeBack: WriteBackService) {}

  /** Oldest first; page with `?afterId=` (the last id seen), filter with `?key=`, `?limit=` 1-1000 (default 100). */
  @Get()
  list(@Query('limit') limit?: unknown, @Query('afterId') afterId?: unknown, @Query('key') key?: unknown): Promise<WriteBackDeadLetter[]> {
    return this.writeBack.listDeadLetters({
      limit: optionalInteger('limit', limit, 1, 1000),
      afterId: afterId === undefined ? undefined : deadLetterId('afterId', afterId),
      key: optionalString('key', key),
    });
  }

  /** Re-queues the dead letter at its version; `requeued` is false when a newer write superseded it. */
  @Post(':id/replay')
  @HttpCode(200)
  replay(@Param('id') id: string): Promise<{ requeued: boolean }> {
    return this.writeBack.replayDeadLetter(deadLetterId('id', id));
  }

  /** Deletes the dead letter for good; 404 if there is no such id. */
  @Delete(':id')
  @HttpCode(204)
  async discard(@Param('id') id: string): Promise<void> {
    await this.writeBack.discardDeadLetter(deadLetterId('id', id));
  }
}
