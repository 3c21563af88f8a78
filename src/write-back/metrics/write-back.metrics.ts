/**
 * What is exposed of the prom-client `Registry` holding this instance's metrics, declared here so the published
 * typings do not need the optional peer; it is a real `Registry` (cast it to merge it into yours).
 */
export interface WriteBackMetricsRegistry {
  metrics(): Promise<string>;
  readonly contentType: string;
}
import type { WriteBackService, WriteBackStats } from '../write-back.service.js';

type CounterStat =
  | 'writes' | 'reads' | 'hits' | 'misses' | 'loads' | 'coalesced' | 'flushes' | 'flushedEntries' | 'flushErrors' | 'retries'
  | 'deadLettered' | 'walSyncs' | 'invalidations' | 'notifications' | 'listenerDisconnects';

const COUNTERS: [CounterStat, string, string][] = [
  ['writes', 'write_back_writes_total', 'Writes (set and delete) accepted.'],
  ['reads', 'write_back_reads_total', 'get() calls.'],
  ['hits', 'write_back_hits_total', 'get() calls answered from memory.'],
  ['misses', 'write_back_misses_total', 'get() calls not in memory.'],
  ['loads', 'write_back_loads_total', 'Rows loaded from Postgres (concurrent misses of a key share one).'],
  ['coalesced', 'write_back_coalesced_total', 'Writes merged into an entry that was already dirty.'],
  ['flushes', 'write_back_flushes_total', 'Batches committed.'],
  ['flushedEntries', 'write_back_flushed_entries_total', 'Entries committed to Postgres.'],
  ['flushErrors', 'write_back_flush_errors_total', 'Failed batch writes (transient or permanent).'],
  ['retries', 'write_back_retries_total', 'Batches put back after a transient failure.'],
  ['deadLettered', 'write_back_dead_lettered_total', 'Entries moved to the dead-letter table.'],
  ['walSyncs', 'write_back_wal_syncs_total', 'fdatasync calls of the write-ahead log.'],
  ['invalidations', 'write_back_invalidations_total', 'Clean copies dropped for newer commits of other instances (or a listener gap).'],
  ['notifications', 'write_back_notifications_total', 'Notifications of other instances\' commits received.'],
  ['listenerDisconnects', 'write_back_listener_disconnects_total', 'Times the invalidation listen connection was lost.'],
];

const GAUGES: [string, string, (stats: WriteBackStats) => number][] = [
  ['write_back_dirty_entries', 'Unflushed entries (in flight included).', (s) => s.dirty],
  ['write_back_in_flight_entries', 'Entries being written now.', (s) => s.inFlight],
  ['write_back_flush_workers', 'Batch writes running now (1 while the flusher keeps up, up to flushConcurrency when behind).', (s) => s.flushWorkers],
  ['write_back_dirty_bytes', 'Characters of unflushed keys and values (bounded by maxDirtyBytes).', (s) => s.dirtyBytes],
  ['write_back_clean_entries', 'Clean entries cached.', (s) => s.cleanEntries],
  ['write_back_clean_bytes', 'Characters of cached clean keys and values (bounded by maxCleanBytes).', (s) => s.cleanBytes],
  ['write_back_flush_lag_seconds', 'Age of the oldest unflushed write.', (s) => s.flushLagMs / 1000],
  ['write_back_wal_bytes', 'Bytes of records in the write-ahead log segment files.', (s) => s.walBytes],
  ['write_back_wal_segments', 'Segment files of the write-ahead log (each preallocated to walSegmentBytes).', (s) => s.walSegments],
  ['write_back_circuit_open', '1 while the circuit breaker is open.', (s) => (s.circuit === 'open' ? 1 : 0)],
  ['write_back_listener_up', '1 while the invalidation listener listens (or is off: singleInstance); 0 while reads bypass the clean cache.', (s) => (s.listener === 'listening' || s.listener === 'off' ? 1 : 0)],
  ['write_back_notify_lag_seconds', 'p99 of another instance\'s commit (its clock) to receipt here, recent notifications.', (s) => s.notifyLagMs.p99 / 1000],
];

/**
 * Prometheus collectors for one write-back instance, in a Registry of their own (merge it into yours with
 * `Registry.merge`). Counters and gauges read `stats()` at scrape time; the two histograms are fed as events
 * happen. Built only when the optional peer `prom-client` is installed.
 */
export class WriteBackMetrics {
  private constructor(readonly registry: WriteBackMetricsRegistry) {}

  /** Returns undefined when prom-client is not installed. */
  static async create(service: WriteBackService, instance: string): Promise<WriteBackMetrics | undefined> {
    let prom: typeof import('prom-client');
    try {
      prom = await import('prom-client');
    } catch {
      return undefined;
    }
    const registry = new prom.Registry();
    registry.setDefaultLabels({ instance_name: instance });
    const stats = () => service.stats();
    for (const [stat, name, help] of COUNTERS) {
      registry.registerMetric(
        new prom.Counter({
          name,
          help,
          registers: [],
          collect() {
            this.reset();
            this.inc(stats()[stat]);
          },
        }),
      );
    }
    for (const [name, help, read] of GAUGES) {
      registry.registerMetric(
        new prom.Gauge({
          name,
          help,
          registers: [],
          collect() {
            this.set(read(stats()));
          },
        }),
      );
    }
    const setLatency = new prom.Histogram({
      name: 'write_back_set_latency_seconds',
      help: 'Latency of set() (sampled, one call in 8).',
      buckets: [0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
      registers: [registry],
    });
    const flushDuration = new prom.Histogram({
      name: 'write_back_flush_duration_seconds',
      help: 'Duration of committed batch writes.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    });
    service.observe({
      setLatency: (seconds) => setLatency.observe(seconds),
      flushDuration: (seconds) => flushDuration.observe(seconds),
    });
    return new WriteBackMetrics(registry);
  }

  /** The exposition text of this instance's metrics. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}
