import { WriteBackService } from './write-back.service.js';

export const WRITE_BACK_MODULE_OPTIONS = Symbol('WRITE_BACK_MODULE_OPTIONS');
export const DEFAULT_WRITE_BACK_NAME = 'default';

/** Injection token of the options of the instance `name` (the default instance when omitted). */
export function getWriteBackOptionsToken(name?: string): string | symbol {
  return name === undefined || name === DEFAULT_WRITE_BACK_NAME ? WRITE_BACK_MODULE_OPTIONS : `WriteBackModuleOptions:${name}`;
}

/** Injection token of the service of the instance `name`; the default instance is injected by its class. */
export function getWriteBackServiceToken(name?: string): string | typeof WriteBackService {
  return name === undefined || name === DEFAULT_WRITE_BACK_NAME ? WriteBackService : `WriteBackService:${name}`;
}
