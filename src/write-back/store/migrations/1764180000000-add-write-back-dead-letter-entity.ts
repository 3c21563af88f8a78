import type { MigrationInterface, QueryRunner } from 'typeorm';
import { schemaPrefix } from './schema-prefix.js';

/**
 * `write_back_dead_letters.entity`: the entity (TypeORM name) of a rejected row of `WriteBackModule.forFeature`, whose
 * `key` is then `Entity:[primary key values]`; null for key-value entries. The column, not the key's text, tells the
 * two apart: a key-value key may be any text.
 */
export class AddWriteBackDeadLetterEntity1764180000000 implements MigrationInterface {
  name = 'AddWriteBackDeadLetterEntity1764180000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE ${schemaPrefix(queryRunner)}"write_back_dead_letters" ADD COLUMN IF NOT EXISTS "entity" text NULL`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`ALTER TABLE ${schemaPrefix(queryRunner)}"write_back_dead_letters" DROP COLUMN IF EXISTS "entity"`);
  }
}
