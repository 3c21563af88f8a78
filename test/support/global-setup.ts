import { rm } from 'node:fs/promises';
import type { TestProject } from 'vitest/node';
import path from 'node:path';
import { startTestDatabase, type TestDatabase } from './test-database.js';

let database: TestDatabase | undefined;
/** Where this run's workers compile the demo to run it as a process (test/support/demo-process.ts). */
const testBuildDir = path.resolve(import.meta.dirname, '../../.test-build', `run-${process.pid}`);

/**
 * One database per test run: on the Postgres at DATABASE_URL (or 127.0.0.1:5432 when something listens there),
 * else on embedded PGlite. With WRITE_BACK_TEST_REQUIRE_POSTGRES=1 (set by .ci/run) a missing server is an error.
 */
export async function setup(project: TestProject): Promise<void> {
  database = await startTestDatabase();
  project.provide('databaseUrl', database.url);
  project.provide('databaseKind', database.kind);
  project.provide('testBuildDir', testBuildDir);
  console.log(`[write-back tests] database: ${database.kind} (${database.description})`);
}

export async function teardown(): Promise<void> {
  await database?.stop();
  await rm(testBuildDir, { recursive: true, force: true });
}

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    databaseKind: 'postgres' | 'pglite';
    testBuildDir: string;
  }
}
