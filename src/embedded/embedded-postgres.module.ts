import { Module } from '@nestjs/common';
import { EmbeddedPostgres } from './embedded-postgres.js';

/**
 * Provides {@link EmbeddedPostgres}. Import it only from the module that uses the database (here the write-back
 * module): Nest runs shutdown hooks of importers before those of the modules they import.
 */
@Module({
  providers: [EmbeddedPostgres],
  exports: [EmbeddedPostgres],
})
export class EmbeddedPostgresModule {}
