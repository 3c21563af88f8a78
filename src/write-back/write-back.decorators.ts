import { Inject } from '@nestjs/common';
import type { EntityTarget } from 'typeorm';
import {
  getWriteBackRepositoryToken,
  getWriteBackHealthIndicatorToken,
  getWriteBackMetricsToken,
  getWriteBackServiceToken,
} from './write-back.constants.js';

/** Injects the `WriteBackService` of the instance `name` (registered with `forRoot({ name, ... })`). */
export const InjectWriteBack = (name?: string): PropertyDecorator & ParameterDecorator =>
  Inject(getWriteBackServiceToken(name));

/** Injects the `WriteBackHealthIndicator` of the instance `name`. */
export const InjectWriteBackHealthIndicator = (name?: string): PropertyDecorator & ParameterDecorator =>
  Inject(getWriteBackHealthIndicatorToken(name));

/** Injects the `WriteBackMetrics` of the instance `name` (undefined when `prom-client` is not installed). */
export const InjectWriteBackMetrics = (name?: string): PropertyDecorator & ParameterDecorator =>
  Inject(getWriteBackMetricsToken(name));

/** Injects the `WriteBackRepository` of `entity` (registered with `WriteBackModule.forFeature([entity], name)`). */
export const InjectWriteBackRepository = (entity: EntityTarget<unknown>, name?: string): PropertyDecorator & ParameterDecorator =>
  Inject(getWriteBackRepositoryToken(entity, name));
