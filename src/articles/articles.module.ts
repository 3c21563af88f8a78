import { Module } from '@nestjs/common';
import { WriteBackModule } from '../write-back/index.js';
import { Article } from './article.entity.js';
import { ArticlesController } from './articles.controller.js';
import { ArticlesTable } from './articles-table.js';

/** The demo's feature module: one entity written behind. */
@Module({
  imports: [WriteBackModule.forFeature([Article])],
  controllers: [ArticlesController],
  providers: [ArticlesTable],
})
export class ArticlesModule {}
