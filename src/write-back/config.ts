import { registerAs } from '@nestjs/config';
import { writeBackOptionsFromEnv, type WriteBackModuleOptions } from './write-back.options.js';

/**
 * The write-back options read from the environment by `@nestjs/config`: each option as `WRITE_BACK_` + its name
 * in SCREAMING_SNAKE_CASE (`flushIntervalMs` -> `WRITE_BACK_FLUSH_INTERVAL_MS`), the connection from
 * `DATABASE_URL`. Use it as `WriteBackModule.forRootAsync(writeBackConfig.asProvider())`.
 *
 * Exported from the `nestjs-write-back/config` entry point only, so apps that do not use `@nestjs/config` (an
 * optional peer) never load it.
 */
export const writeBackConfig = registerAs('writeBack', (): WriteBackModuleOptions => writeBackOptionsFromEnv(process.env));
