import type { MigrationInterface, QueryRunner } from 'typeorm';
import { schemaPrefix } from './schema-prefix.js';

/** An index on `write_back_tombstones.deleted_at`, so the tombstone sweep finds the oldest rows without a scan. */
export class IndexWriteBackTombstonesDeletedAt1764150000000 implements MigrationInterface {
  name = 'IndexWriteBackTombstonesDeletedAt1764150000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const schema = schemaPrefix(queryRunner);
    await queryRunner.query(
      `CREATE INDEX IF NOT EXISTS "write_back_tombstones_deleted_at" ON ${schema}"write_back_tombstones" ("deleted_at")`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP INDEX IF EXISTS ${schemaPrefix(queryRunner)}"write_back_tombstones_deleted_at"`);
  }
}
