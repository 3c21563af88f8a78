import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { APP_FILTER, APP_GUARD } from '@nestjs/core';
import { TerminusModule } from '@nestjs/terminus';
import { ArticlesModule } from './articles/articles.module.js';
import { demoConfig } from './config/demo.config.js';
import { writeBackModuleOptions } from './config/write-back.config.js';
import { AdminController } from './kv/admin.controller.js';
import { ApiTokenGuard } from './kv/api-token.guard.js';
import { DeadLettersController } from './kv/dead-letters.controller.js';
import { HealthController } from './kv/health.controller.js';
import { HttpErrorFilter } from './kv/http-exception.filter.js';
import { JsonContentTypeGuard } from './kv/json-content-type.guard.js';
import { KeepAliveDrain } from './kv/keep-alive-drain.js';
import { KvController } from './kv/kv.controller.js';
import { KvDeltasController } from './kv/kv-deltas.controller.js';
import { MetricsController } from './kv/metrics.controller.js';
import { WriteBackExceptionFilter, WriteBackModule } from './write-back/index.js';

/**
 * The demo service: an HTTP key-value API over the write-back cache, and `articles`, an entity written behind.
 * Configured from the environment (`WRITE_BACK_*`, `DATABASE_URL`, `PORT`, `HOST`, `API_TOKEN`); without
 * `DATABASE_URL` it runs on embedded Postgres.
 */
@Module({
  imports: [
    ConfigModule.forRoot({ isGlobal: true, load: [demoConfig] }),
    TerminusModule,
    WriteBackModule.forRootAsync(writeBackModuleOptions()),
    ArticlesModule,
  ],
  controllers: [KvController, KvDeltasController, AdminController, DeadLettersController, HealthController, MetricsController],
  providers: [
    // Guards run in this order: the token first (401), then the content type (415).
    { provide: APP_GUARD, useClass: ApiTokenGuard },
    { provide: APP_GUARD, useClass: JsonContentTypeGuard },
    // Nest tries the filter registered last first: the library's errors, then every other one.
    { provide: APP_FILTER, useClass: HttpErrorFilter },
    { provide: APP_FILTER, useClass: WriteBackExceptionFilter },
    KeepAliveDrain,
  ],
})
export class AppModule {}
