import { Logger, type OnModuleInit } from '@nestjs/common';
import type { WriteBackService } from '../write-back.service.js';
import { withTimeout } from '../with-timeout.js';

/**
 * The shape of a terminus `HealthIndicatorResult`, declared here so the published typings do not need the
 * optional peer `@nestjs/terminus`; terminus' `HealthCheckService.check()` accepts it as is.
 */
export type WriteBackHealthResult = Record<string, { status: 'up' | 'down'; [detail: string]: unknown }>;

/** What this indicator uses of terminus' `HealthIndicatorService`. */
interface HealthIndicatorSessions {
  check(key: string): { up(data: Record<string, unknown>): object; down(data: Record<string, unknown>): object };
}

export interface WriteBackHealth {
  healthy: boolean;
  details: Record<string, unknown>;
}

/**
 * Readiness and liveness of one write-back instance as terminus indicator results. Neither ever throws: a down
 * result carries the reason in `reasons`. Readiness is down when the flush lag is over `maxFlushLagMs`, dirty
 * entries are over `dirtyHighWatermark`, or the circuit is open. Liveness is down only when the flush timer has
 * stopped ticking (never because Postgres is down: restarting every pod would not bring it back).
 *
 * `@nestjs/terminus` is an optional peer: without it the same result objects are built by hand.
 */
export class WriteBackHealthIndicator implements OnModuleInit {
  private readonly logger = new Logger('WriteBackHealthIndicator');
  private indicators: HealthIndicatorSessions | undefined;

  constructor(private readonly service: WriteBackService) {}

  async onModuleInit(): Promise<void> {
    try {
      const terminus = await import('@nestjs/terminus');
      this.indicators = new terminus.HealthIndicatorService();
    } catch {
      this.indicators = undefined;
    }
  }

  /** Readiness: `GET /health/ready`. */
  async isReady(key = 'writeBack'): Promise<WriteBackHealthResult> {
    const health = await this.readiness();
    return this.result(key, health);
  }

  /** Liveness: `GET /health/live`. */
  isAlive(key = 'writeBack'): WriteBackHealthResult {
    return this.result(key, this.liveness());
  }

  async readiness(): Promise<WriteBackHealth> {
    const { options } = this.service;
    const stats = this.service.stats();
    const reasons: string[] = [];
    if (stats.flushLagMs > options.maxFlushLagMs) reasons.push(`flush lag ${stats.flushLagMs} ms > maxFlushLagMs ${options.maxFlushLagMs}`);
    if (stats.dirty > options.dirtyHighWatermark) reasons.push(`dirty ${stats.dirty} > dirtyHighWatermark ${options.dirtyHighWatermark}`);
    if (stats.dirtyBytes > options.dirtyBytesHighWatermark) {
      reasons.push(`dirty bytes ${stats.dirtyBytes} > dirtyBytesHighWatermark ${options.dirtyBytesHighWatermark}`);
    }
    if (stats.circuit === 'open') reasons.push('circuit open: Postgres is failing');
    let deadLetters: number | null = null;
    try {
      // The timeout's plain Error is only logged below: an indicator never throws.
      deadLetters = await withTimeout(this.service.countDeadLetters(), 1000, () => new Error('timed out after 1000 ms'));
    } catch (error) {
      this.logger.debug(`Could not count dead letters: ${(error as Error).message}`);
    }
    // Checked after the query: a shutdown that began while it ran must show in this answer (terminus reports
    // "shutting_down" from its own flag, read when the answer is assembled).
    if (this.service.isShuttingDown) reasons.push('shutting down');
    return {
      healthy: reasons.length === 0,
      details: {
        dirty: stats.dirty,
        dirtyBytes: stats.dirtyBytes,
        flushLagMs: stats.flushLagMs,
        inFlight: stats.inFlight,
        flushWorkers: stats.flushWorkers,
        lastFlushAt: stats.lastFlushAt,
        lastError: stats.lastError,
        deadLetters,
        circuit: stats.circuit,
        walBytes: stats.walBytes,
        listener: stats.listener,
        invalidations: stats.invalidations,
        notifyLagMs: stats.notifyLagMs,
        ...(reasons.length > 0 ? { reasons } : {}),
      },
    };
  }

  liveness(now = Date.now()): WriteBackHealth {
    const { options } = this.service;
    const { running, lastTickAt } = this.service.flushLoopStatus();
    const sinceTickMs = now - lastTickAt;
    const limitMs = options.flushIntervalMs * options.livenessStallIntervals;
    // Without autoFlush (or once a graceful shutdown stopped the timer) there is no loop to watch.
    const stalled = running && options.autoFlush && sinceTickMs > limitMs;
    return {
      healthy: !stalled,
      details: {
        flushLoop: running ? 'running' : 'stopped',
        sinceLastTickMs: sinceTickMs,
        ...(stalled ? { reasons: [`flush timer has not ticked for ${sinceTickMs} ms (limit ${limitMs} ms)`] } : {}),
      },
    };
  }

  private result(key: string, health: WriteBackHealth): WriteBackHealthResult {
    if (this.indicators !== undefined) {
      const session = this.indicators.check(key);
      return (health.healthy ? session.up(health.details) : session.down(health.details)) as WriteBackHealthResult;
    }
    return { [key]: { ...health.details, status: health.healthy ? 'up' : 'down' } };
  }
}
