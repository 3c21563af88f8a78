import { registerAs, type ConfigType } from '@nestjs/config';

/** Where the embedded Postgres keeps its data when `WRITE_BACK_DEMO_DATA_DIR` is unset. */
export const DEFAULT_DEMO_DATA_DIR = './.data/pglite';

/** Shortest `API_TOKEN` accepted: a guessable token is no protection. */
export const MIN_API_TOKEN_LENGTH = 16;

/**
 * Settings of the demo service itself (not of the write-back module): `PORT` (default 3000), `HOST` (the
 * address to bind, default every interface), `API_TOKEN` (when set, every mutating and admin route needs
 * `Authorization: Bearer <token>`) and `WRITE_BACK_DEMO_DATA_DIR`, the data directory of the embedded Postgres
 * used without `DATABASE_URL`. An empty variable counts as unset.
 */
export const demoConfig = registerAs('demo', () => ({
  port: parsePort(process.env.PORT),
  host: process.env.HOST?.trim() || undefined,
  apiToken: parseApiToken(process.env.API_TOKEN),
  dataDir: process.env.WRITE_BACK_DEMO_DATA_DIR?.trim() || DEFAULT_DEMO_DATA_DIR,
}));

export type DemoConfig = ConfigType<typeof demoConfig>;

function parsePort(raw: string | undefined): number {
  if (raw === undefined || raw.trim() === '') return 3000;
  const text = raw.trim();
  const port = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(port) || port > 65_535) {
    throw new Error(`Invalid environment variable "PORT": expected an integer from 0 to 65535, got "${text}"`);
  }
  return port;
}

function parseApiToken(raw: string | undefined): string | undefined {
  const token = raw?.trim();
  if (!token) return undefined;
  if (token.length < MIN_API_TOKEN_LENGTH || /\s/.test(token)) {
    throw new Error(
      `Invalid environment variable "API_TOKEN": expected at least ${MIN_API_TOKEN_LENGTH} characters without spaces ` +
        '(e.g. the output of "openssl rand -hex 32")',
    );
  }
  return token;
}
