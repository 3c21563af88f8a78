import type { QueryRunner } from 'typeorm';

/** `"schema".` when the DataSource has a schema option, else '' (the connection's search_path decides). */
export function schemaPrefix(queryRunner: QueryRunner): string {
  const schema = (queryRunner.connection.options as { schema?: string }).schema;
  return schema ? `"${schema}".` : '';
}
