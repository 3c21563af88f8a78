import { WriteBackHealthIndicator } from './health/write-back.health.js';
import { WriteBackMetrics } from './metrics/write-back.metrics.js';
import type { EntitySchema, EntityTarget } from 'typeorm';
import { WriteBackService } from './write-back.service.js';

export const WRITE_BACK_MODULE_OPTIONS = Symbol('WRITE_BACK_MODULE_OPTIONS');
export const DEFAULT_WRITE_BACK_NAME = 'default';

const isDefault = (name: string | undefined): boolean => name === undefined || name === DEFAULT_WRITE_BACK_NAME;

/** Injection token of the resolved options of the instance `name` (the default instance when omitted). */
export function getWriteBackOptionsToken(name?: string): string | symbol {
  return isDefault(name) ? WRITE_BACK_MODULE_OPTIONS : `WriteBackModuleOptions:${name}`;
}

/** Injection token of the service of the instance `name`; the default instance is injected by its class. */
export function getWriteBackServiceToken(name?: string): string | typeof WriteBackService {
  return isDefault(name) ? WriteBackService : `WriteBackService:${name}`;
}

/** Injection token of the health indicator of the instance `name`; the default one is injected by its class. */
export function getWriteBackHealthIndicatorToken(name?: string): string | typeof WriteBackHealthIndicator {
  return isDefault(name) ? WriteBackHealthIndicator : `WriteBackHealthIndicator:${name}`;
}

/**
 * Injection token of the Prometheus metrics of the instance `name` (undefined without `prom-client`); the default
 * one is injected by its class.
 */
export function getWriteBackMetricsToken(name?: string): string | typeof WriteBackMetrics {
  return isDefault(name) ? WriteBackMetrics : `WriteBackMetrics:${name}`;
}

/**
 * Injection token of the `WriteBackRepository` of `entity` on the instance `name` (registered with
 * `WriteBackModule.forFeature([entity], name)`); for `Test.createTestingModule(...).overrideProvider(token)`.
 */
export function getWriteBackRepositoryToken(entity: EntityTarget<unknown>, name?: string): string {
  const entityName =
    typeof entity === 'function'
      ? entity.name
      : typeof entity === 'string'
        ? entity
        : ((entity as EntitySchema).options?.name ?? (entity as { name: string }).name);
  return isDefault(name) ? `WriteBackRepository<${entityName}>` : `WriteBackRepository:${name}<${entityName}>`;
}
