import { Catch, HttpStatus, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import {
  WriteBackClosedError,
  WriteBackDeadLetterNotFoundError,
  WriteBackError,
  WriteBackFlushTimeoutError,
  WriteBackOverloadedError,
  WriteBackValidationError,
  WriteBackWriteThroughError,
} from '../write-back.errors.js';

/** The body of every error answer of {@link WriteBackExceptionFilter}, the shape Nest's own HTTP errors have. */
export interface WriteBackErrorBody {
  statusCode: number;
  /** The error class, e.g. `WriteBackInvalidKeyError`. */
  error: string;
  message: string;
}

/**
 * The HTTP status of a write-back error: bad input 400, unknown dead letter 404, Postgres failed a write-through
 * 502, full or shutting down 503, `flush({ timeoutMs })` out of time 504, anything else 500.
 */
export function writeBackErrorStatus(error: WriteBackError): number {
  if (error instanceof WriteBackValidationError) return HttpStatus.BAD_REQUEST;
  if (error instanceof WriteBackDeadLetterNotFoundError) return HttpStatus.NOT_FOUND;
  if (error instanceof WriteBackWriteThroughError) return HttpStatus.BAD_GATEWAY;
  if (error instanceof WriteBackOverloadedError || error instanceof WriteBackClosedError) {
    return HttpStatus.SERVICE_UNAVAILABLE;
  }
  if (error instanceof WriteBackFlushTimeoutError) return HttpStatus.GATEWAY_TIMEOUT;
  return HttpStatus.INTERNAL_SERVER_ERROR;
}

/**
 * Maps the library's typed errors to HTTP answers `{ statusCode, error, message }` carrying the error's message;
 * a 503 also says `Retry-After: 1` (a full cache drains within a flush interval; a closing replica is replaced).
 * Register it globally (`{ provide: APP_FILTER, useClass: WriteBackExceptionFilter }`) or on a controller
 * (`@UseFilters(WriteBackExceptionFilter)`). Errors that are not the library's are left to Nest's other filters;
 * outside HTTP (microservices, GraphQL resolvers) the error is passed on unchanged.
 */
@Catch(WriteBackError)
export class WriteBackExceptionFilter implements ExceptionFilter<WriteBackError> {
  private readonly logger = new Logger('WriteBackExceptionFilter');

  constructor(private readonly adapterHost: HttpAdapterHost) {}

  catch(error: WriteBackError, host: ArgumentsHost): void {
    if (host.getType() !== 'http') throw error;
    const status = writeBackErrorStatus(error);
    if (status >= 500) this.logger.warn(`${error.name}: ${error.message}`);
    const response = host.switchToHttp().getResponse();
    const adapter = this.adapterHost.httpAdapter;
    if (status === HttpStatus.SERVICE_UNAVAILABLE) adapter.setHeader(response, 'Retry-After', '1');
    const body: WriteBackErrorBody = { statusCode: status, error: error.name, message: error.message };
    adapter.reply(response, body, status);
  }
}
