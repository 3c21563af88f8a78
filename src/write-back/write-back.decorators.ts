import { Inject } from '@nestjs/common';
import { getWriteBackServiceToken } from './write-back.constants.js';

/** Injects the `WriteBackService` of the instance `name` (registered with `forRoot({ ... }, name)`). */
export const InjectWriteBack = (name?: string): PropertyDecorator & ParameterDecorator =>
  Inject(getWriteBackServiceToken(name));
