import type { MigrationInterface, QueryRunner } from 'typeorm';
import { schemaPrefix } from './schema-prefix.js';

/**
 * Deltas (`increment`, `merge`) applied by Postgres exactly once:
 * - `write_back_entries.base_version`: the version of the last whole value (set) of the row; a delta older than it
 *   is skipped (the set replaced it), younger ones all apply, in any order (they commute). `last_delta` keeps the
 *   last delta applied (the statement passes it through the row it proposes).
 * - `write_back_delta_ledger`: per writer (`origin`) and key, the highest delta version applied, written in the
 *   same statement as the delta: a batch retried after an unknown outcome, or replayed from the WAL, skips what was
 *   applied. A writer flushes one delta of a key at a time, in version order, so the highest version says it all.
 * - `write_back_merge_patch` (RFC 7396) and `write_back_apply_delta`, which raises 22023 / 22003 with the key and
 *   the reason when the stored value does not fit (the row is then dead-lettered like any rejected row).
 * - dead letters may hold a delta (`operation = 'delta'`, `value` = the delta document).
 */
export class CreateWriteBackDeltas1764160000000 implements MigrationInterface {
  name = 'CreateWriteBackDeltas1764160000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const s = schemaPrefix(queryRunner);
    await queryRunner.query(`ALTER TABLE ${s}"write_back_entries" ADD COLUMN IF NOT EXISTS "base_version" bigint`);
    await queryRunner.query(`UPDATE ${s}"write_back_entries" SET "base_version" = "version" WHERE "base_version" IS NULL`);
    await queryRunner.query(`ALTER TABLE ${s}"write_back_entries" ALTER COLUMN "base_version" SET DEFAULT 0`);
    await queryRunner.query(`ALTER TABLE ${s}"write_back_entries" ALTER COLUMN "base_version" SET NOT NULL`);
    await queryRunner.query(`ALTER TABLE ${s}"write_back_entries" ADD COLUMN IF NOT EXISTS "last_delta" jsonb NULL`);
    await queryRunner.query(`
      CREATE TABLE IF NOT EXISTS ${s}"write_back_delta_ledger" (
        "origin" text NOT NULL,
        "key" text NOT NULL,
        "version" bigint NOT NULL,
        "applied_at" timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY ("origin", "key")
      )`);
    await queryRunner.query(
      `ALTER TABLE ${s}"write_back_dead_letters" DROP CONSTRAINT IF EXISTS "write_back_dead_letters_operation_check"`,
    );
    await queryRunner.query(
      `ALTER TABLE ${s}"write_back_dead_letters" ADD CONSTRAINT "write_back_dead_letters_operation_check" ` +
        `CHECK ("operation" IN ('upsert', 'delete', 'delta'))`,
    );
    await queryRunner.query(`
      CREATE OR REPLACE FUNCTION ${s}"write_back_merge_patch"(target jsonb, patch jsonb) RETURNS jsonb
      LANGUAGE plpgsql IMMUTABLE AS $fn$
      DECLARE
        result jsonb;
        field text;
        change jsonb;
      BEGIN
        IF jsonb_typeof(patch) IS DISTINCT FROM 'object' THEN
          RETURN patch;
        END IF;
        result := CASE WHEN jsonb_typeof(target) = 'object' THEN target ELSE '{}'::jsonb END;
        FOR field, change IN SELECT * FROM jsonb_each(patch) LOOP
          IF jsonb_typeof(change) = 'null' THEN
            result := result - field;
          ELSE
            result := jsonb_set(result, ARRAY[field], ${s}"write_back_merge_patch"(result -> field, change));
          END IF;
        END LOOP;
        RETURN result;
      END
      $fn$`);
    await queryRunner.query(`
      CREATE OR REPLACE FUNCTION ${s}"write_back_apply_delta"(k text, value jsonb, delta jsonb) RETURNS jsonb
      LANGUAGE plpgsql IMMUTABLE AS $fn$
      DECLARE
        result jsonb := value;
        patch jsonb;
        inc jsonb := delta -> 'i';
        field text;
        amount jsonb;
        current jsonb;
        total numeric;
      BEGIN
        IF delta ? 'p' THEN
          FOR patch IN SELECT * FROM jsonb_array_elements(delta -> 'p') LOOP
            result := ${s}"write_back_merge_patch"(result, patch);
          END LOOP;
        END IF;
        IF inc IS NULL THEN
          RETURN result;
        END IF;
        IF jsonb_typeof(inc) = 'number' THEN
          result := coalesce(result, '0'::jsonb);
          IF jsonb_typeof(result) <> 'number' THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
              MESSAGE = format('cannot increment key %s: a number increment needs a number, the value is %s', k, jsonb_typeof(result));
          END IF;
          total := result::numeric + inc::numeric;
          IF abs(total) > 9007199254740991 THEN
            RAISE EXCEPTION USING ERRCODE = '22003',
              MESSAGE = format('cannot increment key %s: %s would leave the exact integer range (2^53-1)', k, total);
          END IF;
          RETURN to_jsonb(total);
        END IF;
        result := coalesce(result, '{}'::jsonb);
        IF jsonb_typeof(result) <> 'object' THEN
          RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('cannot increment fields of key %s: the value is %s, not an object', k, jsonb_typeof(result));
        END IF;
        FOR field, amount IN SELECT * FROM jsonb_each(inc) LOOP
          current := coalesce(result -> field, '0'::jsonb);
          IF jsonb_typeof(current) <> 'number' THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
              MESSAGE = format('cannot increment field %s of key %s: it is %s, not a number', field, k, jsonb_typeof(current));
          END IF;
          total := current::numeric + amount::numeric;
          IF abs(total) > 9007199254740991 THEN
            RAISE EXCEPTION USING ERRCODE = '22003',
              MESSAGE = format('cannot increment field %s of key %s: %s would leave the exact integer range (2^53-1)', field, k, total);
          END IF;
          result := jsonb_set(result, ARRAY[field], to_jsonb(total));
        END LOOP;
        RETURN result;
      END
      $fn$`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    const s = schemaPrefix(queryRunner);
    await queryRunner.query(`DROP FUNCTION IF EXISTS ${s}"write_back_apply_delta"(text, jsonb, jsonb)`);
    await queryRunner.query(`DROP FUNCTION IF EXISTS ${s}"write_back_merge_patch"(jsonb, jsonb)`);
    await queryRunner.query(`DROP TABLE IF EXISTS ${s}"write_back_delta_ledger"`);
    await queryRunner.query(`ALTER TABLE ${s}"write_back_entries" DROP COLUMN IF EXISTS "last_delta"`);
    await queryRunner.query(`ALTER TABLE ${s}"write_back_entries" DROP COLUMN IF EXISTS "base_version"`);
  }
}
