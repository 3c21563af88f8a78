import type { MigrationInterface, QueryRunner } from 'typeorm';
import { schemaPrefix } from './schema-prefix.js';

/** Creates `write_back_entries` and `write_back_dead_letters` (idempotent, so replicas may race at start). */
export class CreateWriteBackTables1764130000000 implements MigrationInterface {
  name = 'CreateWriteBackTables1764130000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const schema = schemaPrefix(queryRunner);
    await queryRunner.query(`
      CREATE TABLE IF NOT EXISTS ${schema}"write_back_entries" (
        "key" text PRIMARY KEY,
        "value" jsonb NOT NULL,
        "version" bigint NOT NULL,
        "updated_at" timestamptz NOT NULL DEFAULT now()
      )`);
    await queryRunner.query(`
      CREATE TABLE IF NOT EXISTS ${schema}"write_back_dead_letters" (
        "id" bigserial PRIMARY KEY,
        "key" text NOT NULL,
        "value" jsonb NULL,
        "version" bigint NOT NULL,
        "operation" text NOT NULL CHECK ("operation" IN ('upsert', 'delete')),
        "error_code" text NULL,
        "error_message" text NOT NULL,
        "attempts" integer NOT NULL,
        "first_failed_at" timestamptz NOT NULL,
        "last_failed_at" timestamptz NOT NULL
      )`);
    await queryRunner.query(
      `CREATE INDEX IF NOT EXISTS "write_back_dead_letters_key_idx" ON ${schema}"write_back_dead_letters" ("key")`,
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const schema = schemaPrefix(queryRunner);
    await queryRunner.query(`DROP TABLE IF EXISTS ${schema}"write_back_dead_letters"`);
    await queryRunner.query(`DROP TABLE IF EXISTS ${schema}"write_back_entries"`);
  }
}
