import { Logger } from '@nestjs/common';
import { Article } from '../articles/article.entity.js';
import { EmbeddedPostgres } from '../embedded/embedded-postgres.js';
import { EmbeddedPostgresModule } from '../embedded/embedded-postgres.module.js';
import {
  resolveWriteBackOptions,
  WriteBackConfigError,
  writeBackEnvName,
  type WriteBackModuleAsyncOptions,
  type WriteBackModuleOptions,
} from '../write-back/index.js';

import { writeBackConfig } from '../write-back/config.js';

// The library's own env config (the `nestjs-write-back/config` entry point), reused as any app would.
export { writeBackConfig };

/**
 * `WriteBackModule.forRootAsync()` options: `writeBackConfig.asProvider()`, extended so that without
 * `DATABASE_URL` the module connects to the embedded Postgres. `EmbeddedPostgresModule` is imported by the
 * write-back module, so Nest shuts it down after the write-back service drained and closed its DataSource.
 */
export function writeBackModuleOptions(): WriteBackModuleAsyncOptions {
  const fromEnv = writeBackConfig.asProvider();
  const logger = new Logger('WriteBackConfig');
  return {
    imports: [...fromEnv.imports, EmbeddedPostgresModule],
    inject: [...fromEnv.inject, EmbeddedPostgres],
    useFactory: async (options: WriteBackModuleOptions, embedded: EmbeddedPostgres): Promise<WriteBackModuleOptions> => {
      // Checked before anything starts, so a bad value names its variable and no embedded server is left behind.
      const resolved = checkEnvOptions(options);
      // The demo's own entity, written behind by ArticlesModule (WriteBackModule.forFeature needs it in the DataSource).
      const entities = [Article];
      if (options.url !== undefined) {
        const schema = options.schema === undefined ? '' : `, schema "${options.schema}"`;
        logger.log(`Database: Postgres at ${redactUrl(options.url)} (from ${urlVariable()})${schema}`);
        return { ...options, entities };
      }
      const url = await embedded.start(resolved.poolSize + 4);
      return { ...options, url, entities };
    },
  };
}

/** Validates the options as the module will, but reports the environment variable instead of the option. */
function checkEnvOptions(options: WriteBackModuleOptions) {
  try {
    return resolveWriteBackOptions({ ...options, url: options.url ?? 'postgres://embedded/postgres' });
  } catch (error) {
    if (!(error instanceof WriteBackConfigError) || !/^[a-z][A-Za-z]*$/.test(error.option)) throw error;
    const variable = error.option === 'url' ? urlVariable() : writeBackEnvName(error.option);
    const problem = error.message.replace(`Invalid write-back option "${error.option}": `, '');
    throw new WriteBackConfigError(variable, problem);
  }
}

function urlVariable(): string {
  return process.env[writeBackEnvName('url')]?.trim() ? writeBackEnvName('url') : 'DATABASE_URL';
}

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparsable URL)';
  }
}
