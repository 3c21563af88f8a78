import type { MigrationInterface, QueryRunner } from 'typeorm';
import { schemaPrefix } from './schema-prefix.js';

/**
 * The hybrid logical clock's state in Postgres (see cache/hybrid-clock.ts):
 * - `write_back_instance_ids`: a cycling sequence 0..255 from which each instance takes the id it puts in the low
 *   bits of its versions, so two instances started within 256 starts of each other never issue the same version;
 * - `write_back_clock(slot, version)`: the highest version each instance's flushes committed (a few slots per
 *   instance, so its parallel flush connections never wait on one row). An instance lifts its clock past
 *   `max(version)` at start: a read of at most a few thousand rows instead of a scan of the entries. Seeded here
 *   with the highest version the tables hold already (the one scan, once).
 */
export class CreateWriteBackClock1764170000000 implements MigrationInterface {
  name = 'CreateWriteBackClock1764170000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const schema = schemaPrefix(queryRunner);
    await queryRunner.query(
      `CREATE SEQUENCE IF NOT EXISTS ${schema}"write_back_instance_ids" AS integer MINVALUE 0 MAXVALUE 255 START 0 CYCLE`,
    );
    await queryRunner.query(`
      CREATE TABLE IF NOT EXISTS ${schema}"write_back_clock" (
        "slot" integer PRIMARY KEY,
        "version" bigint NOT NULL
      )`);
    await queryRunner.query(`
      INSERT INTO ${schema}"write_back_clock" ("slot", "version")
      SELECT -1, high FROM (
        SELECT greatest((SELECT max("version") FROM ${schema}"write_back_entries"),
                        (SELECT max("version") FROM ${schema}"write_back_tombstones")) AS high
      ) seed
      WHERE high IS NOT NULL
      ON CONFLICT ("slot") DO NOTHING`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const schema = schemaPrefix(queryRunner);
    await queryRunner.query(`DROP TABLE IF EXISTS ${schema}"write_back_clock"`);
    await queryRunner.query(`DROP SEQUENCE IF EXISTS ${schema}"write_back_instance_ids"`);
  }
}
