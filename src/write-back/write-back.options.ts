import type { DataSource, EntitySchema } from 'typeorm';
import type { PostgresDataSourceOptions } from 'typeorm/driver/postgres/PostgresDataSourceOptions.js';
import { WriteBackConfigError } from './write-back.errors.js';

export type WriteBackPriority = 'high' | 'normal' | 'low';
export type WriteBackDurability = 'none' | 'wal-async' | 'wal-sync';
export type WriteBackBackpressure = 'block' | 'reject';
export type WriteBackWalCorruption = 'fail' | 'skip';

/** Options of `WriteBackModule.forRoot()`; every field but the connection has a default. */
export interface WriteBackModuleOptions {
  /**
   * Postgres connection string. The module opens (and closes) its own TypeORM DataSource.
   * Give either `url` or `dataSource`.
   */
  url?: string;
  /**
   * An initialized TypeORM DataSource the application already owns; the module never closes it. Its `entities`
   * need not list the module's tables (the module's SQL names them).
   */
  dataSource?: DataSource;
  /**
   * With `url`: the application's entities that `WriteBackModule.forFeature` writes behind, added to the DataSource
   * the module opens (it never synchronizes them: their tables come from the app's migrations). With `dataSource`
   * they must be in that DataSource instead, and this option is refused.
   * @default []
   */
  entities?: (Function | EntitySchema)[];
  /** Extra TypeORM options for the DataSource opened from `url` (ignored with `dataSource`). */
  connectionOptions?: Partial<Omit<PostgresDataSourceOptions, 'type' | 'url' | 'entities' | 'migrations'>>;
  /**
   * Postgres schema of the module's tables (`write_back_entries`, `_tombstones`, `_dead_letters`, `_delta_ledger`,
   * `_clock`, `_migrations`), its sequence `write_back_instance_ids` and its SQL functions. A named instance gets
   * a schema of its own so two instances never share rows.
   * @default the DataSource's schema, or the connection's default (usually "public"), for the default instance;
   *   `write_back_<name>` for a named instance
   */
  schema?: string;
  /**
   * Run the module's TypeORM migrations (table `write_back_migrations`) at start.
   * @default true
   */
  runMigrations?: boolean;
  /**
   * Further attempts of the first connection to Postgres when it fails (the database starting after the
   * application), `retryDelay` ms apart; each failure is logged. Applies to the DataSource opened from `url`.
   * @default 9
   */
  retryAttempts?: number;
  /**
   * Time between two attempts of the first connection, in ms.
   * @default 3000
   */
  retryDelay?: number;
  /**
   * Run the background flush timer. Turn off in tests that call `flush()` themselves.
   * @default true
   */
  autoFlush?: boolean;
  /**
   * Time between flush rounds, in ms. Writes to one key inside this window coalesce into one row write.
   * @default 1000
   */
  flushIntervalMs?: number;
  /**
   * A `high` priority write starts a flush within this many ms.
   * @default 10
   */
  highPriorityDelayMs?: number;
  /**
   * Most rows in one upsert statement; a flush also starts early once this many entries are dirty (not counting
   * hot keys held for the next interval, see `coalesceHotKeys`).
   * @default 1000
   */
  batchSize?: number;
  /**
   * Hot keys: a key written again after the flusher took it in the current interval waits for the next interval
   * tick instead of being written again by an early (`batchSize`) flush, so a key written all the time costs one
   * row write per `flushIntervalMs`, not one per batch. Every write is still taken by the first tick after it, as
   * without early flushes. `high` writes, `flush()`, a shutdown drain and a dirty set at half of
   * `maxDirtyEntries` are never held back. With durability `none` a crash can so lose up to `flushIntervalMs` of a
   * hot key's writes, the bound every write has; without holding, early batches often wrote them sooner. `false`
   * re-writes hot keys as often as batches fill up (fresher rows, more load on Postgres and on the application's CPU).
   * @default true
   */
  coalesceHotKeys?: boolean;
  /**
   * Most batches written in parallel, each on its own connection. The flusher writes one batch at a time while it
   * keeps up, and up to this many once it falls behind (see `flushScaleUpLagMs`), when the dirty set is half of
   * `maxDirtyEntries`, while a `high` write is queued, or while `flush()` or a shutdown drain waits.
   * @default 2
   */
  flushConcurrency?: number;
  /**
   * How long, in ms, the next queued write may wait before the flusher writes more than one batch at a time (up to
   * `flushConcurrency`). Below it a second connection would only re-write hot keys sooner, taking CPU from the
   * application and Postgres. `0` always writes `flushConcurrency` batches at once (lowest lag, most load).
   * @default flushIntervalMs
   */
  flushScaleUpLagMs?: number;
  /**
   * Most clean (flushed or loaded) entries kept in memory, evicted least-recently-used. Dirty entries are not counted.
   * @default 100000
   */
  maxEntries?: number;
  /**
   * Most unflushed entries held in memory; past it `set` waits or fails (see `backpressure`).
   * @default 100000
   */
  maxDirtyEntries?: number;
  /**
   * Most characters of unflushed keys and values (their JSON text) held in memory; past it `set` waits or fails
   * like at `maxDirtyEntries` (see `backpressure`). A character is one byte for ASCII text (V8 keeps text with a
   * character above U+00FF at two bytes each); count about 100 bytes more per entry for its bookkeeping. Must hold
   * the largest value: at least `maxValueBytes + maxKeyLength`. The default keeps the dirty set of a stalled
   * database, with `maxCleanBytes`, within a 512 MiB container (see the README, "Memory").
   * @default 67108864 (64 MiB)
   */
  maxDirtyBytes?: number;
  /**
   * Most characters of keys and values kept in the clean cache (lru-cache's `maxSize`); least-recently-used entries
   * are evicted beyond it, as beyond `maxEntries`. A value larger than this is not cached clean (reads load it).
   * @default 67108864 (64 MiB)
   */
  maxCleanBytes?: number;
  /**
   * What `set` does when `maxDirtyEntries` or `maxDirtyBytes` is reached: wait for room (`block`) or fail at once (`reject`).
   * @default 'block'
   */
  backpressure?: WriteBackBackpressure;
  /**
   * With `backpressure: 'block'`, how long `set` waits for room before failing with `WriteBackOverloadedError`.
   * @default 5000
   */
  backpressureTimeoutMs?: number;
  /**
   * Attempts of a row that Postgres rejects permanently (22xxx, 23xxx, 54000) before it goes to the dead-letter
   * table. Transient errors are retried without limit and never dead-lettered.
   * @default 3
   */
  maxRetries?: number;
  /**
   * First retry delay after a transient flush failure, in ms; it doubles per consecutive failure, with jitter.
   * @default 100
   */
  retryBaseDelayMs?: number;
  /**
   * Upper bound of the retry delay, in ms.
   * @default 30000
   */
  retryMaxDelayMs?: number;
  /**
   * Consecutive transient failures after which the circuit opens (readiness turns down).
   * @default 3
   */
  circuitBreakerThreshold?: number;
  /**
   * `none`: writes live in memory until flushed; a crash (kill -9, OOM) loses what was not flushed yet.
   * `wal-async`: each write is also appended to a local write-ahead log, fsynced every `walSyncIntervalMs`; a
   * crash loses at most that window. `wal-sync`: `set` resolves only once its record is fsynced (group commit);
   * a crash loses no acknowledged write. The log is replayed at the next start before the service serves.
   * @default 'none'
   */
  durability?: WriteBackDurability;
  /**
   * Directory of the write-ahead log (for `wal-*` durability). One process and one instance per directory.
   * @default './.write-back-wal' for the default instance, './.write-back-wal-<name>' for a named one
   */
  walDir?: string;
  /**
   * With `wal-async`, how often the WAL is fsynced, in ms.
   * @default 100
   */
  walSyncIntervalMs?: number;
  /**
   * Size of a WAL segment file: each is zero-filled to this size when created (the next one ahead of time, in
   * the background), and a new one is started once the active one is full. A segment is deleted once all its
   * records are flushed.
   * @default 16777216 (16 MiB)
   */
  walSegmentBytes?: number;
  /**
   * A damaged WAL record that is not the torn tail of the newest segment: stop start-up with an error naming the
   * file and offset (`fail`), or skip it with a warning (`skip`).
   * @default 'fail'
   */
  walCorruption?: WriteBackWalCorruption;
  /**
   * How long a graceful shutdown waits for the drain before giving up (and logging what it could not flush).
   * @default 10000
   */
  shutdownTimeoutMs?: number;
  /**
   * Readiness turns down when the oldest unflushed write is older than this, in ms.
   * @default 30000
   */
  maxFlushLagMs?: number;
  /**
   * Readiness turns down when more entries than this are dirty.
   * @default 80% of maxDirtyEntries
   */
  dirtyHighWatermark?: number;
  /**
   * Readiness turns down when the dirty entries hold more characters than this (see `maxDirtyBytes`).
   * @default 80% of maxDirtyBytes
   */
  dirtyBytesHighWatermark?: number;
  /**
   * Liveness turns down when the flush timer has not ticked for this many intervals.
   * @default 5
   */
  livenessStallIntervals?: number;
  /**
   * Longest key, in UTF-16 code units.
   * @default 512
   */
  maxKeyLength?: number;
  /**
   * Largest value, in bytes of its JSON text.
   * @default 1048576
   */
  maxValueBytes?: number;
  /**
   * Postgres `statement_timeout` for the module's own connection, in ms. A batch write also has a client-side
   * deadline (this plus up to 5 s, for the answer to arrive): past it the connection is discarded and the batch
   * retried on a new one, which also ends a write stuck on a silent network partition. 0 turns both off.
   * @default 30000
   */
  statementTimeoutMs?: number;
  /**
   * Connections in the pool the module opens from `url`.
   * @default flushConcurrency + 4
   */
  poolSize?: number;
  /**
   * How long, in ms, the tombstone of a delete (the row in `write_back_tombstones` that keeps an older write of the
   * key from bringing it back) is kept before the module sweeps it. A write older than the delete that reaches
   * Postgres after the sweep would bring the key back: a replica's unflushed write or a WAL replayed after an outage
   * longer than this. Tombstones whose key has a dead letter older than the delete are never swept. The sweep runs
   * with the flush timer (`autoFlush`). `0` keeps every tombstone for ever.
   * @default 2592000000 (30 days)
   */
  tombstoneRetentionMs?: number;
  /**
   * Time between two tombstone sweeps, in ms. One replica sweeps at a time (an advisory lock); each sweep deletes
   * in transactions of 500 rows until nothing older than `tombstoneRetentionMs` is left.
   * @default 600000 (10 minutes)
   */
  tombstoneSweepIntervalMs?: number;
  /**
   * How long a row of the delta ledger (`write_back_delta_ledger`: the highest delta version each writer applied to
   * each key) is kept after it was last written; the tombstone sweeper deletes older ones. A delta whose outcome
   * stays unknown for longer than this (Postgres unreachable that long with the delta in flight, or a write-ahead
   * log left unreplayed that long) could be applied a second time. `0` keeps them for ever.
   * @default 2592000000 (30 days)
   */
  deltaLedgerRetentionMs?: number;
  /**
   * Promise that this is the only instance reading and writing these tables. Then flushes announce nothing (no
   * NOTIFY) and no listen connection is opened, so clean copies are kept until evicted. With several instances
   * (replicas, or another process writing the tables through this module) that serves stale reads: leave it off.
   * @default false
   */
  singleInstance?: boolean;
  /**
   * Connection string of the one connection that LISTENs for other instances' commits. LISTEN is session state:
   * it must reach Postgres directly (or through PgBouncer in session mode), never through a transaction pooler.
   * Set it when `url` points at PgBouncer in transaction mode.
   * @default url (or the dataSource's connection)
   */
  listenUrl?: string;
  /**
   * How often the listen connection is checked with a query, in ms: a connection lost without a word (a silent
   * network partition) is noticed within this plus 5 s, and until then notifications may be missed.
   * @default 5000
   */
  listenHeartbeatMs?: number;
  /**
   * The id (0-255) this instance puts in the low bits of its versions, so two instances never issue the same one.
   * By default each start takes the next id of the cycling sequence `write_back_instance_ids`: unique among any 256
   * consecutive starts. Set it only to give every instance a fixed, distinct id (for example a StatefulSet ordinal).
   * @default the next id of write_back_instance_ids
   */
  instanceId?: number;
}

/** The options with every default filled in. */
export interface ResolvedWriteBackOptions
  extends Required<Omit<WriteBackModuleOptions, 'url' | 'dataSource' | 'connectionOptions' | 'schema' | 'listenUrl' | 'instanceId' | 'entities'>> {
  url?: string;
  listenUrl?: string;
  instanceId?: number;
  entities?: (Function | EntitySchema)[];
  dataSource?: DataSource;
  connectionOptions?: WriteBackModuleOptions['connectionOptions'];
  schema?: string;
}

export const WRITE_BACK_DEFAULTS = {
  runMigrations: true,
  autoFlush: true,
  coalesceHotKeys: true,
  flushIntervalMs: 1000,
  highPriorityDelayMs: 10,
  batchSize: 1000,
  flushConcurrency: 2,
  maxEntries: 100_000,
  maxDirtyEntries: 100_000,
  maxDirtyBytes: 64 * 1024 * 1024,
  maxCleanBytes: 64 * 1024 * 1024,
  backpressure: 'block',
  backpressureTimeoutMs: 5000,
  maxRetries: 3,
  retryBaseDelayMs: 100,
  retryMaxDelayMs: 30_000,
  circuitBreakerThreshold: 3,
  durability: 'none',
  walDir: './.write-back-wal',
  walSyncIntervalMs: 100,
  walSegmentBytes: 16 * 1024 * 1024,
  walCorruption: 'fail',
  shutdownTimeoutMs: 10_000,
  maxFlushLagMs: 30_000,
  livenessStallIntervals: 5,
  maxKeyLength: 512,
  maxValueBytes: 1024 * 1024,
  statementTimeoutMs: 30_000,
  retryAttempts: 9,
  retryDelay: 3000,
  tombstoneRetentionMs: 30 * 24 * 3600 * 1000,
  tombstoneSweepIntervalMs: 10 * 60 * 1000,
  deltaLedgerRetentionMs: 30 * 24 * 3600 * 1000,
  singleInstance: false,
  listenHeartbeatMs: 5000,
} as const satisfies Partial<WriteBackModuleOptions>;

type IntegerOption = {
  [K in keyof WriteBackModuleOptions]-?: NonNullable<WriteBackModuleOptions[K]> extends number ? K : never;
}[keyof WriteBackModuleOptions];

const INTEGER_BOUNDS: Record<IntegerOption, [min: number, max: number]> = {
  flushIntervalMs: [1, 3_600_000],
  highPriorityDelayMs: [0, 3_600_000],
  // 65,535 bind parameters do not limit us (arrays are one parameter each), memory per statement does.
  batchSize: [1, 50_000],
  flushConcurrency: [1, 64],
  flushScaleUpLagMs: [0, 3_600_000],
  maxEntries: [1, 100_000_000],
  maxDirtyEntries: [1, 100_000_000],
  maxDirtyBytes: [1024, 2 ** 40],
  maxCleanBytes: [1024, 2 ** 40],
  backpressureTimeoutMs: [0, 3_600_000],
  maxRetries: [1, 1000],
  retryBaseDelayMs: [1, 3_600_000],
  retryMaxDelayMs: [1, 3_600_000],
  circuitBreakerThreshold: [1, 1000],
  walSyncIntervalMs: [1, 60_000],
  walSegmentBytes: [4096, 4 * 1024 * 1024 * 1024],
  shutdownTimeoutMs: [0, 3_600_000],
  maxFlushLagMs: [1, 86_400_000],
  dirtyHighWatermark: [1, 100_000_000],
  dirtyBytesHighWatermark: [1, 2 ** 40],
  livenessStallIntervals: [2, 1000],
  maxKeyLength: [1, 10_000],
  maxValueBytes: [16, 256 * 1024 * 1024],
  statementTimeoutMs: [0, 3_600_000],
  poolSize: [1, 1000],
  retryAttempts: [0, 1000],
  retryDelay: [0, 3_600_000],
  // Up to ten years; 0 turns sweeping off.
  tombstoneRetentionMs: [0, 10 * 365 * 24 * 3600 * 1000],
  tombstoneSweepIntervalMs: [1000, 86_400_000],
  deltaLedgerRetentionMs: [0, 10 * 365 * 24 * 3600 * 1000],
  listenHeartbeatMs: [100, 3_600_000],
  instanceId: [0, 255],
};

const ENUMS = {
  backpressure: ['block', 'reject'],
  durability: ['none', 'wal-async', 'wal-sync'],
  walCorruption: ['fail', 'skip'],
} as const;

const BOOLEANS = ['runMigrations', 'autoFlush', 'coalesceHotKeys', 'singleInstance'] as const;

/** Every option name, in declaration order (read from `WRITE_BACK_*` variables by `writeBackOptionsFromEnv`). */
export const WRITE_BACK_OPTION_NAMES = [
  'url',
  'listenUrl',
  'schema',
  ...BOOLEANS,
  ...(Object.keys(INTEGER_BOUNDS) as IntegerOption[]),
  ...(Object.keys(ENUMS) as (keyof typeof ENUMS)[]),
  'walDir',
] as const;

/**
 * Fills in defaults and checks every option, throwing {@link WriteBackConfigError} naming the first bad one.
 * Used by both `forRoot` and `forRootAsync`.
 */
export function resolveWriteBackOptions(options: WriteBackModuleOptions, instance = DEFAULT_INSTANCE): ResolvedWriteBackOptions {
  if (options === null || typeof options !== 'object') {
    throw new WriteBackConfigError('options', 'expected an object');
  }
  checkInstanceName(instance);
  const known = new Set<string>([...WRITE_BACK_OPTION_NAMES, 'dataSource', 'connectionOptions', 'entities']);
  for (const name of Object.keys(options)) {
    if (!known.has(name)) throw new WriteBackConfigError(name, 'unknown option');
  }
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const resolved = { ...WRITE_BACK_DEFAULTS, ...instanceDefaults(instance), ...defined } as ResolvedWriteBackOptions;
  resolved.poolSize ??= resolved.flushConcurrency + 4;
  resolved.flushScaleUpLagMs ??= resolved.flushIntervalMs;
  resolved.dirtyHighWatermark ??= Math.max(1, Math.floor(resolved.maxDirtyEntries * 0.8));
  resolved.dirtyBytesHighWatermark ??= Math.max(1, Math.floor(resolved.maxDirtyBytes * 0.8));

  if (!resolved.url === !resolved.dataSource) {
    throw new WriteBackConfigError('url', 'give exactly one of "url" (a postgres:// connection string) or "dataSource"');
  }
  if (resolved.url !== undefined && (typeof resolved.url !== 'string' || !/^postgres(ql)?:\/\//.test(resolved.url))) {
    throw new WriteBackConfigError('url', 'expected a postgres:// or postgresql:// connection string');
  }
  if (resolved.dataSource !== undefined && typeof resolved.dataSource.query !== 'function') {
    throw new WriteBackConfigError('dataSource', 'expected a TypeORM DataSource');
  }
  if (resolved.listenUrl !== undefined && (typeof resolved.listenUrl !== 'string' || !/^postgres(ql)?:\/\//.test(resolved.listenUrl))) {
    throw new WriteBackConfigError('listenUrl', 'expected a postgres:// or postgresql:// connection string');
  }
  if (resolved.entities !== undefined) {
    if (!Array.isArray(resolved.entities) || resolved.entities.some((e) => typeof e !== 'function' && (typeof e !== 'object' || e === null))) {
      throw new WriteBackConfigError('entities', 'expected an array of TypeORM entity classes or EntitySchemas');
    }
    if (resolved.dataSource !== undefined && resolved.entities.length > 0) {
      throw new WriteBackConfigError('entities', 'with "dataSource", list the entities in that DataSource instead');
    }
  }
  if (resolved.schema !== undefined && !/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/.test(resolved.schema)) {
    throw new WriteBackConfigError('schema', 'expected a plain Postgres identifier');
  }
  for (const name of BOOLEANS) {
    if (typeof resolved[name] !== 'boolean') throw new WriteBackConfigError(name, 'expected true or false');
  }
  for (const [name, [min, max]] of Object.entries(INTEGER_BOUNDS) as [IntegerOption, [number, number]][]) {
    const value = resolved[name];
    if (value === undefined && name === 'instanceId') continue;
    if (value === undefined || !Number.isInteger(value) || value < min || value > max) {
      throw new WriteBackConfigError(name, `expected an integer from ${min} to ${max}, got ${String(value)}`);
    }
  }
  for (const [name, allowed] of Object.entries(ENUMS) as [keyof typeof ENUMS, readonly string[]][]) {
    if (!allowed.includes(resolved[name])) {
      throw new WriteBackConfigError(name, `expected one of ${allowed.map((a) => `"${a}"`).join(', ')}`);
    }
  }
  if (typeof resolved.walDir !== 'string' || resolved.walDir === '') {
    throw new WriteBackConfigError('walDir', 'expected a directory path');
  }
  if (resolved.retryMaxDelayMs < resolved.retryBaseDelayMs) {
    throw new WriteBackConfigError('retryMaxDelayMs', 'must not be less than retryBaseDelayMs');
  }
  if (resolved.maxDirtyBytes < resolved.maxValueBytes + resolved.maxKeyLength) {
    throw new WriteBackConfigError(
      'maxDirtyBytes',
      `must hold the largest write: at least maxValueBytes + maxKeyLength (${resolved.maxValueBytes + resolved.maxKeyLength}), got ${resolved.maxDirtyBytes}`,
    );
  }
  if (resolved.poolSize < resolved.flushConcurrency) {
    throw new WriteBackConfigError('poolSize', 'must be at least flushConcurrency');
  }
  return resolved;
}

const DEFAULT_INSTANCE = 'default';
const INSTANCE_NAME = /^[A-Za-z][A-Za-z0-9_]{0,47}$/;

/** A name becomes part of a schema, a directory and injection tokens: letters, digits and `_` only. */
export function checkInstanceName(name: unknown): void {
  if (typeof name !== 'string' || !INSTANCE_NAME.test(name)) {
    throw new WriteBackConfigError(
      'name',
      `expected a letter followed by up to 47 letters, digits or "_", got ${JSON.stringify(name)}`,
    );
  }
}

/** A named instance keeps its rows and its write-ahead log apart from every other instance. */
function instanceDefaults(instance: string): Partial<WriteBackModuleOptions> {
  if (instance === DEFAULT_INSTANCE) return {};
  return { schema: `write_back_${instance}`, walDir: `${WRITE_BACK_DEFAULTS.walDir}-${instance}` };
}

function nonEmpty(raw: string | undefined): string | undefined {
  const text = raw?.trim();
  return text === undefined || text === '' ? undefined : text;
}

/** `flushIntervalMs` -> `WRITE_BACK_FLUSH_INTERVAL_MS`. */
export function writeBackEnvName(option: string): string {
  return `WRITE_BACK_${option.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/**
 * Reads every option from `WRITE_BACK_*` variables (plus `DATABASE_URL` for `url`). Unset variables are left
 * out so defaults apply; a malformed number or boolean throws {@link WriteBackConfigError} naming the variable.
 */
export function writeBackOptionsFromEnv(env: Record<string, string | undefined> = process.env): WriteBackModuleOptions {
  const options: Record<string, unknown> = {};
  for (const name of WRITE_BACK_OPTION_NAMES) {
    const variable = writeBackEnvName(name);
    // An empty variable means unset (`DATABASE_URL=` in a compose file): the default, or DATABASE_URL, applies.
    const text = nonEmpty(env[variable]) ?? (name === 'url' ? nonEmpty(env.DATABASE_URL) : undefined);
    if (text === undefined) continue;
    if ((BOOLEANS as readonly string[]).includes(name)) {
      if (!/^(true|false|1|0)$/i.test(text)) throw new WriteBackConfigError(variable, 'expected true or false');
      options[name] = /^(true|1)$/i.test(text);
    } else if (name in INTEGER_BOUNDS) {
      if (!/^-?\d+$/.test(text)) throw new WriteBackConfigError(variable, `expected an integer, got "${text}"`);
      options[name] = Number(text);
    } else {
      options[name] = text;
    }
  }
  return options as WriteBackModuleOptions;
}
