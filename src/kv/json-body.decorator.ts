import { BadRequestException, createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { inexactNumber } from './exact-numbers.js';
import { charsetOf } from './json-content-type.guard.js';

interface JsonRequest {
  body?: unknown;
  rawBody?: Buffer;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * The parsed JSON request body, or `undefined` when there is none. The JSON body parser turns a body that decodes to
 * no text at all into `{}` (an empty body, or one holding only a byte-order mark: `EF BB BF`, or `FF FE` sent as
 * UTF-16), so the raw bytes (kept by `NestFactory.create(..., { rawBody: true })`) are decoded again here, the
 * byte-order mark dropped: a body with no JSON value in it is `undefined` (the caller answers 400), never `{}`.
 * A number a JavaScript number cannot hold exactly is a 400 too (see exact-numbers.ts).
 */
export const JsonBody = createParamDecorator((_data: unknown, context: ExecutionContext): unknown => {
  const request = context.switchToHttp().getRequest<JsonRequest>();
  if (request.rawBody === undefined || request.rawBody.length === 0) return undefined;
  const charset = charsetOf(request.headers['content-type']);
  let text: string;
  try {
    text = new TextDecoder(charset, { fatal: true }).decode(request.rawBody);
  } catch {
    // Decoded leniently, the bad bytes would be stored as U+FFFD: a value that was never sent.
    throw new BadRequestException(`The request body is not valid ${charset.toUpperCase()} text.`);
  }
  if (text.trim() === '') return undefined;
  const inexact = inexactNumber(text);
  if (inexact !== undefined) {
    throw new BadRequestException(
      `The number ${inexact.length > 40 ? `${inexact.slice(0, 40)}...` : inexact} cannot be stored exactly: JavaScript numbers hold ` +
        'about 15-17 significant digits (integers exactly up to 2^53 - 1). Send it as a JSON string to keep every digit.',
    );
  }
  return request.body;
});
