import { Injectable, UnsupportedMediaTypeException, type CanActivate, type ExecutionContext } from '@nestjs/common';

/** Charsets a JSON body may be sent in (RFC 8259 asks for UTF-8; the body parser also reads UTF-16). */
const JSON_CHARSETS = new Set(['utf-8', 'utf8', 'utf-16', 'utf-16le', 'utf-16be']);

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

interface HeaderRequest {
  method: string;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * Mutating requests take JSON only. A request with a body must say `Content-Type: application/json` (415
 * otherwise); a `POST` must say so even without a body. A browser sends a cross-site `POST` without asking the
 * server first (a "simple request") only with a form or `text/plain` content type or none: requiring
 * `application/json` (or, for `PATCH`, `application/merge-patch+json`) makes every such request fail here, before anything runs, while a script that really is
 * allowed (same origin, or CORS) can send the header. PUT, PATCH and DELETE are never simple requests.
 */
@Injectable()
export class JsonContentTypeGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    if (context.getType() !== 'http') return true;
    const request = context.switchToHttp().getRequest<HeaderRequest>();
    if (READ_METHODS.has(request.method)) return true;
    const hasBody = Number(request.headers['content-length'] ?? 0) > 0 || request.headers['transfer-encoding'] !== undefined;
    if (!hasBody && request.method !== 'POST') return true;
    const contentType = request.headers['content-type'];
    // A JSON Merge Patch (RFC 7396) has a media type of its own, for PATCH.
    const mediaType = mediaTypeOf(contentType);
    if (mediaType !== 'application/json' && !(request.method === 'PATCH' && mediaType === 'application/merge-patch+json')) {
      throw new UnsupportedMediaTypeException(
        `${request.method} needs "Content-Type: application/json"${hasBody ? '' : ' (even without a body: it keeps cross-site form posts out)'}, ` +
          `got ${contentType === undefined ? 'none' : JSON.stringify(contentType)}.`,
      );
    }
    if (!JSON_CHARSETS.has(charsetOf(contentType))) {
      throw new UnsupportedMediaTypeException(`JSON is read as UTF-8 (or UTF-16), got charset ${JSON.stringify(charsetOf(contentType))}.`);
    }
    return true;
  }
}

/** `application/json; charset=utf-8` -> `application/json`. */
export function mediaTypeOf(header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string') return undefined;
  return header.split(';', 1)[0].trim().toLowerCase();
}

/** The charset parameter of a Content-Type, lower case, `utf-8` when absent. */
export function charsetOf(header: string | string[] | undefined): string {
  if (typeof header !== 'string') return 'utf-8';
  const match = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(header);
  return match === null ? 'utf-8' : match[1].toLowerCase();
}
