import { Inject } from '@nestjs/common';
import {
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
