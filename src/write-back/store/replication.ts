import type pg from 'pg';
import type { DataSource } from 'typeorm';
import type { PostgresDataSourceOptions as PostgresConnectionOptions } from 'typeorm/driver/postgres/PostgresDataSourceOptions.js';
import type { ResolvedWriteBackOptions } from '../write-back.options.js';
import type { WriteBackStore } from './write-back.store.js';

/** What an instance needs to take part with the others on the same tables (see WriteBackService). */
export interface ReplicationStart {
  /** In the low bits of every version this instance issues. */
  instanceId: number;
  /** The highest version any instance committed before this start: the clock starts above it. */
  highWater: number;
  /** Marks this instance's notifications (it skips its own). */
  origin: string;
  channel: string;
  /** The listen connection's settings; undefined with `singleInstance`. */
  listen: pg.ClientConfig | undefined;
}

/** Claims the instance id and the clock's start from Postgres, and says where to LISTEN. */
export async function startReplication(
  options: ResolvedWriteBackOptions,
  store: WriteBackStore,
  dataSource: DataSource,
): Promise<ReplicationStart> {
  const { instanceId, highWater, origin } = await store.startClock(options.instanceId, !options.singleInstance);
  return {
    instanceId,
    highWater,
    origin,
    channel: store.channel,
    listen: options.singleInstance ? undefined : listenConnection(options, dataSource),
  };
}

/** `listenUrl`, else the module's own URL, else the connection settings of the application's DataSource. */
function listenConnection(options: ResolvedWriteBackOptions, dataSource: DataSource): pg.ClientConfig {
  const base: pg.ClientConfig = { connectionTimeoutMillis: 10_000 };
  if (options.listenUrl !== undefined) return { ...base, connectionString: options.listenUrl };
  const own = options.connectionOptions as Partial<PostgresConnectionOptions> | undefined;
  if (options.url !== undefined) return { ...base, connectionString: options.url, ssl: own?.ssl as pg.ClientConfig['ssl'] };
  const app = dataSource.options as PostgresConnectionOptions;
  return {
    ...base,
    connectionString: app.url,
    host: app.host,
    port: app.port,
    user: app.username,
    password: typeof app.password === 'string' ? app.password : undefined,
    database: app.database,
    ssl: app.ssl as pg.ClientConfig['ssl'],
  };
}
