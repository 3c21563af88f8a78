import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { createApp } from './config/create-app.js';
import { demoConfig, type DemoConfig } from './config/demo.config.js';

const logger = new Logger('Main');

/**
 * `npm start`: the demo key-value service on `PORT` (default 3000), bound to `HOST` (default every interface). On SIGTERM / SIGINT Nest runs the shutdown
 * hooks (the write-back drain, then the DataSource and the embedded Postgres close) and the process exits 0.
 */
async function bootstrap(): Promise<void> {
  const app = await createApp();
  app.enableShutdownHooks([], { useProcessExit: true });
  const { port, host, apiToken } = app.get<DemoConfig>(demoConfig.KEY);
  if (host === undefined) await app.listen(port);
  else await app.listen(port, host);
  if (apiToken === undefined) {
    logger.warn('API_TOKEN is not set: anyone who reaches this port can write, delete, flush and discard dead letters');
  }
  logger.log(`Write-back demo listening on ${await app.getUrl()}`);
}

bootstrap().catch((error: unknown) => {
  logger.error(`Start-up failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
