/**
 * Sorts a flush error into one that goes away by itself (retry the batch, never dead-letter) or one caused
 * by the rows (split the batch, dead-letter the bad rows after maxRetries).
 *
 * Only data errors are permanent: 22xxx (data exception), 23xxx (integrity constraint) and 54000 (program limit,
 * e.g. a value too large for an index). Everything else, including errors with no SQLSTATE (connection lost,
 * timeouts) and unknown states such as a missing table, is treated as transient: a wrong guess here delays
 * a write, the other way round it would dead-letter good data.
 */
export type ErrorKind = 'transient' | 'permanent';

export function sqlState(error: unknown): string | undefined {
  if (error === null || typeof error !== 'object') return undefined;
  const direct = (error as { code?: unknown }).code;
  // Five characters, but no SQLSTATE class starts with E: that is a Node error code such as EPIPE or EPERM.
  if (typeof direct === 'string' && /^[0-9A-DF-Z][0-9A-Z]{4}$/.test(direct)) return direct;
  // TypeORM's QueryFailedError keeps the driver error.
  const driverError = (error as { driverError?: unknown }).driverError;
  if (driverError !== undefined && driverError !== error) return sqlState(driverError);
  return undefined;
}

/** The SQLSTATE, or the Node error code (ECONNRESET...), for logs and the dead-letter table. */
export function errorCode(error: unknown): string | undefined {
  const state = sqlState(error);
  if (state !== undefined) return state;
  if (error !== null && typeof error === 'object') {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const driverError = (error as { driverError?: unknown }).driverError;
    if (driverError !== undefined && driverError !== error) return errorCode(driverError);
  }
  return undefined;
}

export function classifyError(error: unknown): ErrorKind {
  const state = sqlState(error);
  if (state === undefined) return 'transient';
  if (state.startsWith('22') || state.startsWith('23') || state === '54000') return 'permanent';
  return 'transient';
}

/** Errors of establishing a connection: Postgres is not there, another connection would fail the same way. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

/**
 * An error of a connection that was established and then went away: no SQLSTATE (ECONNRESET, EPIPE, "Connection
 * terminated"...), class 08 (connection exception) or 57P01-57P03 (the server shut down or restarted).
 */
export function isLostConnection(error: unknown): boolean {
  const state = sqlState(error);
  if (state !== undefined) return state.startsWith('08') || state === '57P01' || state === '57P02' || state === '57P03';
  const code = errorCode(error);
  if (code !== undefined && CONNECT_ERRORS.has(code)) return false;
  const message = error instanceof Error ? error.message : String(error);
  return !/timeout/i.test(message);
}
