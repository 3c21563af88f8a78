import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import { WriteBackHealthIndicator } from '../write-back/index.js';
import { HealthCheckResponse } from './api-schemas.js';

/**
 * Kubernetes probes: 200 when up, 503 when down. Liveness fails only when the flush loop stalls; readiness also
 * on flush lag, too many dirty entries or an open circuit, with those figures in its details.
 */
@ApiTags('health')
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly writeBack: WriteBackHealthIndicator,
  ) {}

  /** Down (503) only when the flush loop has stopped ticking, never because Postgres is down. */
  @Get('live')
  @HealthCheck({ swaggerDocumentation: false })
  @ApiOperation({ summary: 'Liveness probe', description: 'Down only when the flush timer stopped ticking for livenessStallIntervals intervals; never because Postgres is down.' })
  @ApiResponse({ status: 200, type: HealthCheckResponse, description: 'Up.' })
  @ApiResponse({ status: 503, type: HealthCheckResponse, description: 'Down: the flush loop stalled.' })
  live(): Promise<HealthCheckResult> {
    return this.health.check([() => this.writeBack.isAlive()]);
  }

  /** Down (503) on flush lag over `maxFlushLagMs`, dirty over `dirtyHighWatermark`, an open circuit or shutdown. */
  @Get('ready')
  @HealthCheck({ swaggerDocumentation: false })
  @ApiOperation({
    summary: 'Readiness probe',
    description: 'Down on flush lag over maxFlushLagMs, dirty entries over dirtyHighWatermark, an open circuit, or while shutting down.',
  })
  @ApiResponse({ status: 200, type: HealthCheckResponse, description: 'Ready.' })
  @ApiResponse({ status: 503, type: HealthCheckResponse, description: 'Not ready; `error.writeBack.reasons` says why.' })
  ready(): Promise<HealthCheckResult> {
    return this.health.check([() => this.writeBack.isReady()]);
  }
}
