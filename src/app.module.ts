import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { APP_FILTER } from '@nestjs/core';
import { TerminusModule } from '@nestjs/terminus';
import { ArticlesModule } from './articles/articles.module.js';
import { demoConfig } from './config/demo.config.js';
import { writeBackModuleOptions } from './config/write-back.config.js';
import { DeadLettersController } from './kv/dead-letters.controller.js';
import { HealthController } from './kv/health.controller.js';
import { KeepAliveDrain } from './kv/keep-alive-drain.js';
import { KvController } from './kv/kv.controller.js';
import { KvDeltasController } from './kv/kv-deltas.controller.js';
import { MetricsController } from './kv/metrics.controller.js';
import { WriteBackExceptionFilter, WriteBackModule } from './write-back/index.js';

/**
 * The demo service: an HTTP key-value API over the write-back cache, and `articles`, an entity written behind. Configured from the environment
 * (`WRITE_BACK_*`, `DATABASE_URL`, `PORT`); without `DATABASE_URL` it runs on embedded Postgres.
 */
@Module({
  imports: [
    ConfigModule.forRoot({ isGlobal: true, load: [demoConfig] }),
    TerminusModule,
    WriteBackModule.forRootAsync(writeBackModuleOptions()),
    ArticlesModule,
  ],
  controllers: [KvController, KvDeltasController, DeadLettersController, HealthController, MetricsController],
  providers: [{ provide: APP_FILTER, useClass: WriteBackExceptionFilter }, KeepAliveDrain],
})
export class AppModule {}
