import { WriteBackDeadLetterEntity } from './write-back-dead-letter.entity.js';
import { WriteBackEntryEntity } from './write-back-entry.entity.js';
import { CreateWriteBackTables1764130000000 } from './migrations/1764130000000-create-write-back-tables.js';
import { CreateWriteBackTombstones1764140000000 } from './migrations/1764140000000-create-write-back-tombstones.js';
import { WriteBackTombstoneEntity } from './write-back-tombstone.entity.js';
import { CreateWriteBackDeltas1764160000000 } from './migrations/1764160000000-create-write-back-deltas.js';
import { AddWriteBackDeadLetterEntity1764170000000 } from './migrations/1764170000000-add-write-back-dead-letter-entity.js';

/** Add these to the `entities` of a DataSource you pass as `dataSource`. */
export const WRITE_BACK_ENTITIES = [WriteBackEntryEntity, WriteBackDeadLetterEntity, WriteBackTombstoneEntity] as const;

/** The module's migrations, run at start into the table `write_back_migrations` unless `runMigrations: false`. */
export const WRITE_BACK_MIGRATIONS = [
  CreateWriteBackTables1764130000000,
  CreateWriteBackTombstones1764140000000,
  CreateWriteBackDeltas1764160000000,
  AddWriteBackDeadLetterEntity1764170000000,
] as const;

export const WRITE_BACK_MIGRATIONS_TABLE = 'write_back_migrations';
