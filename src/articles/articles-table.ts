import { Injectable, type OnModuleInit } from '@nestjs/common';
import { WriteBackService } from '../write-back/index.js';
import { Article } from './article.entity.js';

/**
 * Creates the demo's `articles` table at start, standing in for the migrations a real app runs for its own
 * entities (the module writes into the table; it never creates or synchronizes it). Runs before the first flush:
 * the flush statement is built from the catalog at first use.
 */
@Injectable()
export class ArticlesTable implements OnModuleInit {
  constructor(private readonly writeBack: WriteBackService) {}

  async onModuleInit(): Promise<void> {
    const dataSource = this.writeBack.dataSource;
    const metadata = dataSource.getMetadata(Article);
    const schema = metadata.schema ?? (dataSource.options as { schema?: string }).schema;
    const table = schema ? `"${schema}"."${metadata.tableName}"` : `"${metadata.tableName}"`;
    // Replicas starting together on a fresh schema would race on CREATE TABLE IF NOT EXISTS (a duplicate pg_type
    // row): one query string is one transaction, and the lock makes the others wait, then find the table.
    await dataSource.query(`
      SELECT pg_advisory_xact_lock(hashtext('nestjs-write-back-demo:articles'));
      CREATE TABLE IF NOT EXISTS ${table} (
        "id" text PRIMARY KEY,
        "title" text NOT NULL DEFAULT '',
        "views" bigint NOT NULL DEFAULT 0,
        "updatedAt" timestamptz NOT NULL DEFAULT now()
      )`);
  }
}
