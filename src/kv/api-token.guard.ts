import { Inject, Injectable, SetMetadata, UnauthorizedException, applyDecorators, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ApiBearerAuth } from '@nestjs/swagger';
import { createHash, timingSafeEqual } from 'node:crypto';
import { demoConfig, type DemoConfig } from '../config/demo.config.js';

const OPERATOR_ROUTES = 'write-back-demo:operator-routes';

/** The methods that change nothing: open to every client even with `API_TOKEN` set (except operator routes). */
const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Marks a controller (or handler) as operator-only: with `API_TOKEN` set, its reads need the token too. */
export const OperatorRoutes = (): ClassDecorator & MethodDecorator =>
  applyDecorators(SetMetadata(OPERATOR_ROUTES, true), ApiBearerAuth());


/**
 * With `API_TOKEN` set, every mutating request (any method but GET, HEAD, OPTIONS) and every operator route
 * needs `Authorization: Bearer <API_TOKEN>`; without it the answer is 401 and nothing runs. Reads of keys, the
 * probes and `/metrics` stay open (the kubelet and Prometheus carry no token). Without `API_TOKEN` every request
 * passes: bind to a private address (`HOST`) or put the service behind a NetworkPolicy.
 *
 * Both sides are hashed (SHA-256) before `timingSafeEqual`: it compares equal-length buffers in constant time, and
 * the digests always are equal in length, so neither the token's bytes nor its length leak through timing.
 */
@Injectable()
export class ApiTokenGuard implements CanActivate {
  private readonly expected: Buffer | undefined;

  constructor(
    @Inject(demoConfig.KEY) config: DemoConfig,
    private readonly reflector: Reflector,
  ) {
    this.expected = config.apiToken === undefined ? undefined : digest(config.apiToken);
  }

  canActivate(context: ExecutionContext): boolean {
    if (this.expected === undefined || context.getType() !== 'http') return true;
    const request = context.switchToHttp().getRequest<{ method: string; headers: Record<string, string | string[] | undefined> }>();
    const operator = this.reflector.getAllAndOverride<boolean>(OPERATOR_ROUTES, [context.getHandler(), context.getClass()]) === true;
    if (!operator && READ_METHODS.has(request.method)) return true;
    const presented = bearerToken(request.headers.authorization);
    if (presented === undefined) {
      throw new UnauthorizedException('This route needs "Authorization: Bearer <token>" (the API_TOKEN the service was started with).');
    }
    if (!timingSafeEqual(digest(presented), this.expected)) throw new UnauthorizedException('The bearer token is not the API_TOKEN of this service.');
    return true;
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 6750), or undefined. */
function bearerToken(header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string') return undefined;
  const match = /^Bearer +(\S+) *$/i.exec(header);
  return match?.[1];
}
