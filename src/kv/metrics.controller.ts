import { Controller, Get, Header, Optional } from '@nestjs/common';
import { ApiOperation, ApiProduces, ApiResponse, ApiTags } from '@nestjs/swagger';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { WriteBackMetrics } from '../write-back/index.js';

/** `GET /metrics`: the process metrics and the write-back instance's, in the Prometheus text format. */
@ApiTags('metrics')
@Controller('metrics')
export class MetricsController {
  private readonly process = new Registry();

  constructor(@Optional() private readonly writeBack?: WriteBackMetrics) {
    collectDefaultMetrics({ register: this.process });
  }

  // Concatenated rather than Registry.merge()d: a merged registry drops the instance's default labels.
  @Get()
  @Header('Content-Type', Registry.PROMETHEUS_CONTENT_TYPE)
  @ApiOperation({ summary: 'Prometheus metrics', description: 'Process metrics and the write_back_* counters, gauges and histograms.' })
  @ApiProduces('text/plain')
  @ApiResponse({ status: 200, description: 'The Prometheus text exposition format.', schema: { type: 'string' } })
  async metrics(): Promise<string> {
    const own = this.writeBack ? await this.writeBack.metrics() : '';
    return `${await this.process.metrics()}\n${own}`;
  }
}
