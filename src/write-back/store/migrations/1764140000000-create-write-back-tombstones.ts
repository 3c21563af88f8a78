import type { MigrationInterface, QueryRunner } from 'typeorm';
import { schemaPrefix } from './schema-prefix.js';

/**
 * `write_back_tombstones`: the version of each committed delete, so an older write of the key that arrives later
 * (a replayed dead letter, another replica's stale write, a WAL replay) cannot bring the key back.
 */
export class CreateWriteBackTombstones1764140000000 implements MigrationInterface {
  name = 'CreateWriteBackTombstones1764140000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const schema = schemaPrefix(queryRunner);
    await queryRunner.query(`
      CREATE TABLE IF NOT EXISTS ${schema}"write_back_tombstones" (
        "key" text PRIMARY KEY,
        "version" bigint NOT NULL,
        "deleted_at" timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`DROP TABLE IF EXISTS ${schemaPrefix(queryRunner)}"write_back_tombstones"`);
  }
}
