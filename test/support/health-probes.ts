import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import { WriteBackHealthIndicator } from '../../src/write-back/index.js';

/**
 * `GET /health/live` and `GET /health/ready` over the library's indicator, as an app wires them (200 up, 503
 * down): the probes a test app serves without borrowing the demo's controller.
 */
@Controller('health')
export class HealthProbesController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly writeBack: WriteBackHealthIndicator,
  ) {}

  @Get('live')
  @HealthCheck({ swaggerDocumentation: false })
  live(): Promise<HealthCheckResult> {
    return this.health.check([() => this.writeBack.isAlive()]);
  }

  @Get('ready')
  @HealthCheck({ swaggerDocumentation: false })
  ready(): Promise<HealthCheckResult> {
    return this.health.check([() => this.writeBack.isReady()]);
  }
}

/** HTTP status of GET /health/<which> on an app started with `settings.http` (test/support/write-back-app.ts). */
export async function probe(t: { httpUrl?: string }, which: 'live' | 'ready'): Promise<number> {
  if (t.httpUrl === undefined) throw new Error('the app serves no HTTP: start it with settings.http');
  const response = await fetch(`${t.httpUrl}/health/${which}`, { signal: AbortSignal.timeout(5000) });
  await response.arrayBuffer();
  return response.status;
}
