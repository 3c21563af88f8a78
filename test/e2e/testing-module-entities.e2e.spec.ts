// WriteBackModule.forFeature under WriteBackTestingModule: the entity flush statement on embedded Postgres (PGlite),
// as an app's own spec (and the demo without DATABASE_URL) runs it.
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Article } from '../../src/articles/article.entity.js';
import { WriteBackModule, WriteBackRepository, WriteBackService, getWriteBackRepositoryToken } from '../../src/write-back/index.js';
import { WriteBackTestingModule } from '../../src/write-back/testing.js';

describe('WriteBackTestingModule with forFeature (embedded PGlite)', () => {
  let app: INestApplication;

  beforeEach(async () => {
    const module = await Test.createTestingModule({
      imports: [WriteBackTestingModule.forRoot({ entities: [Article] }), WriteBackModule.forFeature([Article])],
    }).compile();
    app = await module.createNestApplication({ logger: ['error'] }).init();
  }, 60_000);

  afterEach(() => app.close());

  it('saves, updates, counts and deletes rows of the app\'s table', async () => {
    const cache = app.get(WriteBackService);
    // The app's own migration would create it.
    await cache.dataSource.query(
      `CREATE TABLE articles (id text PRIMARY KEY, title text NOT NULL DEFAULT '', views bigint NOT NULL DEFAULT 0, "updatedAt" timestamptz NOT NULL DEFAULT now())`,
    );
    const articles = app.get<WriteBackRepository<Article>>(getWriteBackRepositoryToken(Article));
    await articles.save({ id: 'a', title: 'A', views: '5' });
    await articles.save({ id: 'b', title: 'B' });
    await cache.flush();
    for (let i = 0; i < 10; i++) await articles.increment('a', 'views');
    await articles.update('b', { title: 'B2' });
    await articles.delete('b');
    await articles.save({ id: 'c', title: 'C' });
    expect(await articles.findOneBy('a')).toMatchObject({ views: '15', title: 'A' });
    await cache.flush();
    expect(await cache.dataSource.query(`SELECT id, title, views::text FROM articles ORDER BY id`)).toEqual([
      { id: 'a', title: 'A', views: '15' },
      { id: 'c', title: 'C', views: '0' },
    ]);
    const loaded = await articles.findOneBy('c');
    expect(loaded).toBeInstanceOf(Article);
    expect(loaded!.updatedAt).toBeInstanceOf(Date);
  });
});
