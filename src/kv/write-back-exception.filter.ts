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
} from '../write-back/index.js';

/** The HTTP status of a write-back error. */
export function statusOf(error: WriteBackError): number {
  if (error instanceof WriteBackValidationError) return HttpStatus.BAD_REQUEST;
  if (error instanceof WriteBackDeadLetterNotFoundError) return HttpStatus.NOT_FOUND;
  if (error instanceof WriteBackWriteThroughError) return HttpStatus.BAD_GATEWAY;
  if (
    error instanceof WriteBackOverloadedError ||
    error instanceof WriteBackClosedError ||
    error instanceof WriteBackFlushTimeoutError
  ) {
    return HttpStatus.SERVICE_UNAVAILABLE;
  }
  return HttpStatus.INTERNAL_SERVER_ERROR;
}

/** Maps the library's typed errors to HTTP answers `{ statusCode, error, message }` carrying the error's message. */
@Catch(WriteBackError)
export class WriteBackExceptionFilter implements ExceptionFilter<WriteBackError> {
  private readonly logger = new Logger('WriteBackExceptionFilter');

  constructor(private readonly adapterHost: HttpAdapterHost) {}

  catch(error: WriteBackError, host: ArgumentsHost): void {
    const status = statusOf(error);
    if (status >= 500) this.logger.warn(`${error.name}: ${error.message}`);
    const response = host.switchToHttp().getResponse();
    const adapter = this.adapterHost.httpAdapter;
    if (status === HttpStatus.SERVICE_UNAVAILABLE) adapter.setHeader(response, 'Retry-After', '1');
    adapter.reply(response, { statusCode: status, error: error.name, message: error.message }, status);
  }
}
