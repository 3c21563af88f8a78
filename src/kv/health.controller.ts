import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import { WriteBackHealthIndicator } from '../write-back/index.js';

/**
 * Kubernetes probes: 200 when up, 503 when down. Liveness fails only when the flush loop stalls; readiness also
 * on flush lag, too many dirty entries or an open circuit, with those figures in its details.
 */
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly writeBack: WriteBackHealthIndicator,
  ) {}

  /** Down (503) only when the flush loop has stopped ticking, never because Postgres is down. */
  @Get('live')
  @HealthCheck()
  live(): Promise<HealthCheckResult> {
    return this.health.check([() => this.writeBack.isAlive()]);
  }

  /** Down (503) on flush lag over `maxFlushLagMs`, dirty over `dirtyHighWatermark` or an open circuit. */
  @Get('ready')
  @HealthCheck()
  ready(): Promise<HealthCheckResult> {
    return this.health.check([() => this.writeBack.isReady()]);
  }
}
