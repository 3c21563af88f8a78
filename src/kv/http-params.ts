import { BadRequestException, createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { WriteBackPriority, WriteBackSetOptions } from '../write-back/index.js';

const PRIORITIES: readonly WriteBackPriority[] = ['high', 'normal', 'low'];

/** Write options from the query string: `?priority=high|normal|low` and `?writeThrough=true|false`. */
function writeOptions(priority: unknown, writeThrough: unknown): WriteBackSetOptions {
  return {
    priority: optionalPriority(priority),
    writeThrough: optionalBoolean('writeThrough', writeThrough),
  };
}

/** The write options of a `/kv` write route, from `?priority=` and `?writeThrough=` (a bad one is a 400 naming it). */
export const WriteOptionsQuery = createParamDecorator((_data: unknown, context: ExecutionContext): WriteBackSetOptions => {
  const { query } = context.switchToHttp().getRequest<{ query: Record<string, unknown> }>();
  return writeOptions(query.priority, query.writeThrough);
});

/** `?priority=`: reported as the query parameter it is, not as the library's option. */
function optionalPriority(raw: unknown): WriteBackPriority | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw === 'string' && (PRIORITIES as readonly string[]).includes(raw)) return raw as WriteBackPriority;
  throw new BadRequestException(`Query parameter "priority" must be high, normal or low, got ${describe(raw)}.`);
}

/** A query value for an error message, cut short: it may be anything a client sent. */
function describe(raw: unknown): string {
  const text = JSON.stringify(raw) ?? String(raw);
  return text.length > 60 ? `${text.slice(0, 60)}...` : text;
}

/** An optional boolean query parameter: `true`/`false` (`1`/`0`), or absent. */
export function optionalBoolean(name: string, raw: unknown): boolean | undefined {
  if (raw === undefined) return undefined;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new BadRequestException(`Query parameter "${name}" must be true or false, got ${describe(raw)}.`);
}

/** An optional integer query parameter within [min, max]. */
export function optionalInteger(name: string, raw: unknown, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const value = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new BadRequestException(`Query parameter "${name}" must be an integer from ${min} to ${max}, got ${describe(raw)}.`);
  }
  return value;
}

const MAX_BIGINT = 9_223_372_036_854_775_807n;

/** A dead-letter id (a positive Postgres bigint, as text). */
export function deadLetterId(name: string, raw: unknown): string {
  if (typeof raw !== 'string' || !/^\d{1,19}$/.test(raw) || BigInt(raw) < 1n || BigInt(raw) > MAX_BIGINT) {
    throw new BadRequestException(`"${name}" must be a dead-letter id (a positive integer), got ${describe(raw)}.`);
  }
  return BigInt(raw).toString();
}

/** An optional string query parameter (a repeated parameter is a 400). */
export function optionalString(name: string, raw: unknown): string | undefined {
  if (raw === undefined || typeof raw === 'string') return raw;
  throw new BadRequestException(`Query parameter "${name}" must be given once.`);
}
