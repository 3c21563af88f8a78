import { registerAs, type ConfigType } from '@nestjs/config';

/** Where the embedded Postgres keeps its data when `WRITE_BACK_DEMO_DATA_DIR` is unset. */
export const DEFAULT_DEMO_DATA_DIR = './.data/pglite';

/**
 * Settings of the demo service itself (not of the write-back module): `PORT` (default 3000) and
 * `WRITE_BACK_DEMO_DATA_DIR`, the data directory of the embedded Postgres used without `DATABASE_URL`.
 */
export const demoConfig = registerAs('demo', () => ({
  port: parsePort(process.env.PORT),
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
