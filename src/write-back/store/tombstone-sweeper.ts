import type { DataSource } from 'typeorm';

/** Tombstones deleted per transaction: small, so a sweep never holds many row locks or a long transaction. */
export const TOMBSTONE_SWEEP_BATCH = 500;

export interface TombstoneSweeperOptions {
  /** Tombstones older than this (by `deleted_at`, Postgres time) are deleted; 0 keeps them for ever. */
  retentionMs: number;
  /**
   * Delta ledger rows (`write_back_delta_ledger`) last written longer ago than this are deleted too; 0 keeps them.
   * @default 0
   */
  ledgerRetentionMs?: number;
  /** Time between two sweeps. */
  intervalMs: number;
}

interface SweeperLogger {
  log(message: string): void;
  warn(message: string): void;
}

/**
 * Deletes old rows of `write_back_tombstones`, which otherwise grow by one row per deleted key for ever.
 *
 * A tombstone keeps the version of a committed delete so that an older write of the key that arrives later (a
 * stale replica's flush, a WAL replayed after a long outage, a dead-letter replay) cannot bring the key back.
 * Once it is swept, such a write would: so only tombstones older than `retentionMs` go, and never one whose key
 * has a dead letter older than the delete (a replay of it must still be refused, however old it is).
 *
 * Each batch is one short transaction under `pg_try_advisory_xact_lock`: with several replicas, one sweeps and the
 * others skip that round instead of queueing (a transaction-scoped lock, so it works behind PgBouncer in
 * transaction mode). The timer is a self-rescheduling `setTimeout`, unref'd so it never keeps a process alive.
 */
export class TombstoneSweeper {
  private readonly tombstones: string;
  private readonly deadLetters: string;
  private readonly lockKey: string;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;
  private started = false;
  private stopped = false;
  /** Tombstones deleted since start. */
  swept = 0;
  /** Delta ledger rows deleted since start. */
  ledgerSwept = 0;
  private readonly ledger: string;

  constructor(
    private readonly dataSource: DataSource,
    schema: string | undefined,
    private readonly options: TombstoneSweeperOptions,
    private readonly logger: SweeperLogger,
  ) {
    const prefix = schema ? `"${schema}".` : '';
    this.tombstones = `${prefix}"write_back_tombstones"`;
    this.deadLetters = `${prefix}"write_back_dead_letters"`;
    this.ledger = `${prefix}"write_back_delta_ledger"`;
    this.lockKey = `nestjs-write-back:tombstone-sweep:${schema ?? ''}`;
  }

  /** Starts sweeping every `intervalMs` (the first sweep one interval from now). No-op when retention is 0. */
  start(): void {
    if ((this.options.retentionMs === 0 && !this.options.ledgerRetentionMs) || this.started || this.stopped) return;
    this.started = true;
    this.schedule();
  }

  /** Stops the timer for good and waits for a sweep in progress (which ends after its current batch). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /**
   * Sweeps now, batch after batch until a batch comes back short. Resolves with the number deleted; 0 when
   * another replica holds the sweep lock (or retention is 0).
   */
  sweep(): Promise<number> {
    this.running ??= this.sweepBatches().finally(() => (this.running = undefined));
    return this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.sweep()
        .then((count) => {
          if (count > 0) this.logger.log(`Swept ${count} tombstones older than tombstoneRetentionMs=${this.options.retentionMs}`);
        })
        .catch((error: unknown) => this.logger.warn(`Tombstone sweep failed (retried next interval): ${(error as Error).message}`))
        .finally(() => this.schedule());
    }, this.options.intervalMs);
    this.timer.unref();
  }

  private async sweepBatches(): Promise<number> {
    const { retentionMs, ledgerRetentionMs = 0 } = this.options;
    if (retentionMs === 0 && ledgerRetentionMs === 0) return 0;
    let total = 0;
    for (;;) {
      const deleted = await this.sweepBatch();
      if (deleted === undefined) return total;
      total += deleted.tombstones;
      this.swept += deleted.tombstones;
      this.ledgerSwept += deleted.ledger;
      const more = deleted.tombstones === TOMBSTONE_SWEEP_BATCH || deleted.ledger === TOMBSTONE_SWEEP_BATCH;
      if (!more || this.stopped) return total;
    }
  }

  /** One batch of each table in one transaction; undefined when another session holds the sweep lock. */
  private async sweepBatch(): Promise<{ tombstones: number; ledger: number } | undefined> {
    const { retentionMs, ledgerRetentionMs = 0 } = this.options;
    const runner = this.dataSource.createQueryRunner();
    try {
      await runner.connect();
      await runner.startTransaction();
      try {
        const [{ locked }] = (await runner.query('SELECT pg_try_advisory_xact_lock(hashtext($1)) AS locked', [this.lockKey])) as { locked: boolean }[];
        if (!locked) {
          await runner.commitTransaction();
          return undefined;
        }
        let tombstones = 0;
        let ledger = 0;
        if (retentionMs > 0) {
          // Oldest first; SKIP LOCKED leaves a tombstone a flush is rewriting right now for the next round.
          const rows = (await runner.query(
            `DELETE FROM ${this.tombstones} AS t
             WHERE t."key" IN (
               SELECT o."key" FROM ${this.tombstones} AS o
               WHERE o."deleted_at" < now() - make_interval(secs => $1::float8 / 1000)
                 AND NOT EXISTS (SELECT 1 FROM ${this.deadLetters} AS d WHERE d."key" = o."key" AND d."version" < o."version")
               ORDER BY o."deleted_at"
               LIMIT $2
               FOR UPDATE SKIP LOCKED)
             RETURNING 1`,
            [retentionMs, TOMBSTONE_SWEEP_BATCH],
          )) as unknown[];
          tombstones = countOf(rows);
        }
        if (ledgerRetentionMs > 0) {
          // A ledger row only matters while a retry or a WAL replay of that writer's delta may still come; one of a
          // dead letter's own, while that dead letter exists (its replay may come at any time).
          const rows = (await runner.query(
            `DELETE FROM ${this.ledger} AS l
             WHERE (l."origin", l."key") IN (
               SELECT o."origin", o."key" FROM ${this.ledger} AS o
               WHERE o."applied_at" < now() - make_interval(secs => $1::float8 / 1000)
                 AND (o."origin" NOT LIKE 'dead-letter:%' OR NOT EXISTS (
                   SELECT 1 FROM ${this.deadLetters} AS d WHERE 'dead-letter:' || d."id" = o."origin"))
               LIMIT $2
               FOR UPDATE SKIP LOCKED)
             RETURNING 1`,
            [ledgerRetentionMs, TOMBSTONE_SWEEP_BATCH],
          )) as unknown[];
          ledger = countOf(rows);
        }
        await runner.commitTransaction();
        return { tombstones, ledger };
      } catch (error) {
        if (runner.isTransactionActive) await runner.rollbackTransaction();
        throw error;
      }
    } finally {
      await runner.release();
    }
  }
}

/** TypeORM returns `[rows, count]` for a DELETE ... RETURNING on Postgres. */
function countOf(result: unknown[]): number {
  if (result.length === 2 && Array.isArray(result[0]) && typeof result[1] === 'number') return result[1];
  return result.length;
}
