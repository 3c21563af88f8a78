import { Catch, HttpException, HttpStatus, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { STATUS_CODES } from 'node:http';

/** The body of every error answer of the demo: `{ statusCode, error, message }`, `message` always one string. */
export interface ErrorBody {
  statusCode: number;
  error: string;
  message: string;
}

/**
 * Answers Nest's own `HttpException`s (404 of an unknown route, the 400/413/415 of the body parser, 401 of the
 * token guard, the controllers' 400s) and any other error in the same shape as the library's typed errors:
 * `{ statusCode, error, message }`. `error` is the HTTP reason phrase; a validation pipe's list of messages is
 * joined into one. An error that is not an `HttpException` is a bug: 500 with a generic message, the stack in
 * the log and never in the answer. The library's `WriteBackError`s are answered by their own filter, registered
 * after this one so Nest tries it first.
 */
@Catch()
export class HttpErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger('HttpErrorFilter');

  constructor(private readonly adapterHost: HttpAdapterHost) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse();
    const adapter = this.adapterHost.httpAdapter;
    if (exception instanceof HttpException && isDocumentBody(exception.getResponse())) {
      // Terminus answers a failed health check with a 503 whose body is the check result (status, info, error,
      // details): the probes' documented answer, not an error message, so it is sent as it is.
      adapter.reply(response, exception.getResponse(), exception.getStatus());
      return;
    }
    const body = errorBody(exception);
    if (body.statusCode >= 500 && !(exception instanceof HttpException)) {
      this.logger.error(exception instanceof Error ? (exception.stack ?? exception.message) : String(exception));
    }
    if (body.statusCode === HttpStatus.UNAUTHORIZED) adapter.setHeader(response, 'WWW-Authenticate', 'Bearer');
    adapter.reply(response, body, body.statusCode);
  }
}

/** An exception body that is a document of its own (a health check result), not `{ message }`. */
function isDocumentBody(response: string | object): boolean {
  return typeof response === 'object' && response !== null && !('message' in response) && 'status' in response;
}

/** The uniform body of `exception`. */
export function errorBody(exception: unknown): ErrorBody {
  if (!(exception instanceof HttpException)) {
    return { statusCode: 500, error: STATUS_CODES[500]!, message: 'Internal server error' };
  }
  const statusCode = exception.getStatus();
  const response = exception.getResponse();
  const error = STATUS_CODES[statusCode] ?? 'Error';
  let message: unknown = typeof response === 'string' ? response : (response as { message?: unknown }).message;
  if (Array.isArray(message)) message = message.join('; ');
  return { statusCode, error, message: typeof message === 'string' && message !== '' ? message : error };
}
