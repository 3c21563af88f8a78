import { ApiProperty, ApiPropertyOptional, type SchemaObject } from '@nestjs/swagger';
import type { CircuitState, FlushReport, WriteBackDeadLetter, WriteBackPriority, WriteBackStats } from '../write-back/index.js';

/**
 * OpenAPI schemas of the demo's answers. Each class `implements` the library type it documents, so a field
 * added or renamed there fails the build here instead of drifting out of the docs.
 */

/** Any JSON value: what `PUT /kv/:key` takes and `GET /kv/:key` returns. */
export const ANY_JSON_SCHEMA: SchemaObject = {
  description: 'Any JSON value: object, array, string, number, boolean or null.',
  nullable: true,
  oneOf: [{ type: 'object', additionalProperties: true }, { type: 'array', items: {} }, { type: 'string' }, { type: 'number' }, { type: 'boolean' }],
  example: { hello: 'world' },
};

/** The body of every error answer (the library's typed errors and Nest's HTTP exceptions alike). */
export class ErrorResponse {
  @ApiProperty({ type: 'integer', example: 400 })
  statusCode!: number;

  @ApiProperty({ description: 'The error class (e.g. WriteBackInvalidKeyError) or the HTTP reason.', example: 'WriteBackInvalidKeyError' })
  error!: string;

  @ApiProperty({ description: 'What went wrong and, for configuration limits, which option to change.' })
  message!: string;
}

/** 401: with `API_TOKEN` set, mutating and operator routes need `Authorization: Bearer <token>`. */
export const UNAUTHORIZED = {
  status: 401,
  type: ErrorResponse,
  description: 'With API_TOKEN set: no `Authorization: Bearer <token>`, or the wrong token.',
} as const;

/** 415: a mutating request with a body that is not `application/json`, or a POST without that content type. */
export const UNSUPPORTED_MEDIA_TYPE = {
  status: 415,
  type: ErrorResponse,
  description: 'The body (or, for POST, the request) is not `Content-Type: application/json` in UTF-8 or UTF-16.',
} as const;

export class FlushReportResponse implements FlushReport {
  @ApiProperty({ type: 'integer', description: 'Entries that were dirty when the flush was called.' })
  requested!: number;

  @ApiProperty({ type: 'integer', description: 'Of those, committed (at their version or a newer one).' })
  committed!: number;

  @ApiProperty({ type: 'integer', description: 'Of those, moved to the dead-letter table.' })
  deadLettered!: number;

  @ApiProperty({ type: 'integer' })
  durationMs!: number;
}

export class NotifyLag {
  @ApiProperty({ type: 'number' })
  last!: number;

  @ApiProperty({ type: 'number' })
  p99!: number;
}

export class QueuedByPriority implements Record<WriteBackPriority, number> {
  @ApiProperty({ type: 'integer' })
  high!: number;

  @ApiProperty({ type: 'integer' })
  normal!: number;

  @ApiProperty({ type: 'integer' })
  low!: number;
}

export class FlushDurationSummary {
  @ApiProperty({ type: 'integer' })
  count!: number;

  @ApiProperty({ type: 'number', description: 'ms' })
  mean!: number;

  @ApiProperty({ type: 'number', description: 'ms' })
  max!: number;
}

export class SetLatencySummary {
  @ApiProperty({ type: 'integer' })
  count!: number;

  @ApiProperty({ type: 'number', description: 'µs' })
  p50!: number;

  @ApiProperty({ type: 'number', description: 'µs' })
  p99!: number;

  @ApiProperty({ type: 'number', description: 'µs' })
  max!: number;
}

export class LastFlushError {
  @ApiProperty({ type: 'string', nullable: true, description: 'SQLSTATE or Node error code.', example: '08006' })
  code!: string | null;

  @ApiProperty()
  message!: string;

  @ApiProperty({ format: 'date-time' })
  at!: string;
}

const CIRCUIT_STATES: CircuitState[] = ['closed', 'open', 'half-open'];

export class StatsResponse implements WriteBackStats {
  @ApiProperty({ type: 'integer', description: 'Writes (set and delete) accepted.' })
  writes!: number;

  @ApiProperty({ type: 'integer' })
  reads!: number;

  @ApiProperty({ type: 'integer' })
  hits!: number;

  @ApiProperty({ type: 'integer' })
  misses!: number;

  @ApiProperty({ type: 'integer', description: 'Rows loaded from Postgres on a miss.' })
  loads!: number;

  @ApiProperty({ type: 'integer', description: 'Writes merged into an entry that was already dirty.' })
  coalesced!: number;

  @ApiProperty({ type: 'integer', description: 'Batches committed.' })
  flushes!: number;

  @ApiProperty({ type: 'integer' })
  flushedEntries!: number;

  @ApiProperty({ type: 'integer' })
  flushErrors!: number;

  @ApiProperty({ type: 'integer' })
  retries!: number;

  @ApiProperty({ type: 'integer' })
  deadLettered!: number;

  @ApiProperty({ type: 'integer', description: 'Unflushed entries, in flight included.' })
  dirty!: number;

  @ApiProperty({ type: 'integer', description: 'Characters of the unflushed keys and values (bounded by maxDirtyBytes).' })
  dirtyBytes!: number;

  @ApiProperty({ type: 'integer' })
  inFlight!: number;

  @ApiProperty({ type: 'integer', description: 'Batch writes running now: 1 while the flusher keeps up, up to flushConcurrency when behind.' })
  flushWorkers!: number;

  @ApiProperty({ type: () => QueuedByPriority })
  queued!: QueuedByPriority;

  @ApiProperty({ type: 'integer' })
  cleanEntries!: number;

  @ApiProperty({ type: 'integer', description: 'Characters of the cached clean keys and values (bounded by maxCleanBytes).' })
  cleanBytes!: number;

  @ApiProperty({ type: 'integer', description: 'Age of the oldest unflushed write, ms (0 when nothing is dirty).' })
  flushLagMs!: number;

  @ApiProperty({ type: () => FlushDurationSummary })
  flushDurationMs!: FlushDurationSummary;

  @ApiProperty({ type: () => SetLatencySummary, description: '`set` latency in µs, sampled (one call in 8).' })
  setLatencyUs!: SetLatencySummary;

  @ApiProperty({ enum: CIRCUIT_STATES })
  circuit!: CircuitState;

  @ApiProperty({ type: 'string', format: 'date-time', nullable: true })
  lastFlushAt!: string | null;

  @ApiProperty({ type: () => LastFlushError, nullable: true })
  lastError!: LastFlushError | null;

  @ApiProperty({ type: 'integer' })
  walBytes!: number;

  @ApiProperty({ type: 'integer' })
  walSegments!: number;

  @ApiProperty({ type: 'integer' })
  walSyncs!: number;

  @ApiProperty({ type: 'integer', description: 'The id (0-255) in the low bits of this instance\'s versions.' })
  instanceId!: number;

  @ApiProperty({
    enum: ['off', 'connecting', 'listening', 'down'],
    description: 'The invalidation listener; while not listening, reads bypass the clean cache.',
  })
  listener!: 'off' | 'connecting' | 'listening' | 'down';

  @ApiProperty({ type: 'integer', description: 'Clean copies dropped for newer commits of other instances.' })
  invalidations!: number;

  @ApiProperty({ type: 'integer', description: 'Pending writes dropped for a newer commit of another instance.' })
  superseded!: number;

  @ApiProperty({ type: 'integer' })
  notifications!: number;

  @ApiProperty({ type: 'integer' })
  invalidatedChanges!: number;

  @ApiProperty({ type: 'integer' })
  listenerDisconnects!: number;

  @ApiProperty({ type: () => NotifyLag, description: 'Another instance\'s commit to receipt here, ms.' })
  notifyLagMs!: NotifyLag;
}

export class DeadLetterResponse implements Omit<WriteBackDeadLetter, 'firstFailedAt' | 'lastFailedAt'> {
  @ApiProperty({ description: 'bigint id, as a string.', example: '42' })
  id!: string;

  @ApiProperty({ description: 'The key; for an entity row `Entity:[primary key values]`.' })
  key!: string;

  @ApiProperty({ type: 'string', nullable: true, description: 'The entity of a written-behind row; null for a key-value entry.', example: 'Article' })
  entity!: string | null;

  @ApiProperty({ ...ANY_JSON_SCHEMA, description: 'The value that was rejected (null for a delete).' } as object)
  value!: unknown;

  @ApiProperty({ type: 'integer', description: 'The write version (µs since the epoch).' })
  version!: number;

  @ApiProperty({ enum: ['upsert', 'delete'] })
  operation!: 'upsert' | 'delete';

  @ApiProperty({ type: 'string', nullable: true, description: 'SQLSTATE of the rejection.', example: '22P02' })
  errorCode!: string | null;

  @ApiProperty()
  errorMessage!: string;

  @ApiProperty({ type: 'integer' })
  attempts!: number;

  @ApiProperty({ type: 'string', format: 'date-time' })
  firstFailedAt!: string;

  @ApiProperty({ type: 'string', format: 'date-time' })
  lastFailedAt!: string;
}

export class ReplayResponse {
  @ApiProperty({ description: 'false when a newer write of the key superseded the dead letter.' })
  requeued!: boolean;

  @ApiProperty({ enum: ['committed', 'dead-lettered', 'superseded'] })
  outcome!: 'committed' | 'dead-lettered' | 'superseded';
}

/** Terminus' answer: the indicator `writeBack` under `info` when up, under `error` when down, always in `details`. */
export class HealthCheckResponse {
  @ApiProperty({ enum: ['ok', 'error', 'shutting_down'], example: 'ok' })
  status!: string;

  @ApiPropertyOptional({
    type: 'object',
    additionalProperties: true,
    nullable: true,
    description: 'Indicators that are up.',
    example: { writeBack: { status: 'up', dirty: 12, flushLagMs: 180, inFlight: 0, flushWorkers: 0, circuit: 'closed', deadLetters: 0 } },
  })
  info?: Record<string, unknown>;

  @ApiPropertyOptional({
    type: 'object',
    additionalProperties: true,
    nullable: true,
    description: 'Indicators that are down, each with `reasons`.',
    example: {},
  })
  error?: Record<string, unknown>;

  @ApiProperty({
    type: 'object',
    additionalProperties: true,
    description:
      'Every indicator. Readiness: `writeBack` with status, dirty, dirtyBytes, flushLagMs, inFlight, flushWorkers, lastFlushAt, lastError, ' +
      'deadLetters, circuit, walBytes and, when down, reasons. Liveness: status, flushLoop, sinceLastTickMs.',
    example: { writeBack: { status: 'up', dirty: 12, flushLagMs: 180, inFlight: 0, flushWorkers: 0, circuit: 'closed', deadLetters: 0 } },
  })
  details!: Record<string, unknown>;
}
