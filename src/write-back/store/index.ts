import { WriteBackDeadLetterEntity } from './write-back-dead-letter.entity.js';
import { WriteBackEntryEntity } from './write-back-entry.entity.js';
import { CreateWriteBackTables1764130000000 } from './migrations/1764130000000-create-write-back-tables.js';
import { CreateWriteBackTombstones1764140000000 } from './migrations/1764140000000-create-write-back-tombstones.js';
import { IndexWriteBackTombstonesDeletedAt1764150000000 } from './migrations/1764150000000-index-write-back-tombstones-deleted-at.js';
import { CreateWriteBackDeltas1764160000000 } from './migrations/1764160000000-create-write-back-deltas.js';
import { CreateWriteBackClock1764170000000 } from './migrations/1764170000000-create-write-back-clock.js';
import { WriteBackTombstoneEntity } from './write-back-tombstone.entity.js';
import { AddWriteBackDeadLetterEntity1764180000000 } from './migrations/1764180000000-add-write-back-dead-letter-entity.js';

/** The module's tables as TypeORM entities (for reading them; the module's own SQL does not need them). */
export const WRITE_BACK_ENTITIES = [WriteBackEntryEntity, WriteBackDeadLetterEntity, WriteBackTombstoneEntity] as const;

/** The module's migrations, run at start into the table `write_back_migrations` unless `runMigrations: false`. */
export const WRITE_BACK_MIGRATIONS = [
  CreateWriteBackTables1764130000000,
  CreateWriteBackTombstones1764140000000,
  IndexWriteBackTombstonesDeletedAt1764150000000,
  CreateWriteBackDeltas1764160000000,
  CreateWriteBackClock1764170000000,
  AddWriteBackDeadLetterEntity1764180000000,
] as const;

export const WRITE_BACK_MIGRATIONS_TABLE = 'write_back_migrations';
