import { BadRequestException, Body, Controller, Get, HttpCode, NotFoundException, Param, Patch, Post, Put } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiParam, ApiProperty, ApiResponse, ApiTags } from '@nestjs/swagger';
import { InjectWriteBackRepository, WriteBackRepository } from '../write-back/index.js';
import { ErrorResponse, UNAUTHORIZED, UNSUPPORTED_MEDIA_TYPE } from '../kv/api-schemas.js';
import { Article } from './article.entity.js';

const ID_PARAM = { name: 'id', description: 'The article slug.', example: 'hello-world' } as const;

export class ArticleResponse {
  @ApiProperty({ example: 'hello-world' })
  id!: string;

  @ApiProperty({ example: 'Hello, world' })
  title!: string;

  @ApiProperty({ description: 'bigint, as a decimal string.', example: '42' })
  views!: string;

  @ApiProperty({ type: 'string', format: 'date-time' })
  updatedAt!: string;
}

class ArticleBody {
  @ApiProperty({ example: 'Hello, world' })
  title!: string;
}

/**
 * The demo's entity route: `articles` rows written behind through `WriteBackRepository<Article>`. A view is an
 * exactly-once increment of `views`; a title change sets only that column.
 */
@ApiTags('articles')
@Controller('articles')
export class ArticlesController {
  constructor(@InjectWriteBackRepository(Article) private readonly articles: WriteBackRepository<Article>) {}

  @Put(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Create or replace an article (its views are kept)' })
  @ApiParam(ID_PARAM)
  @ApiBody({ type: ArticleBody })
  @ApiResponse({ status: 204, description: 'Accepted; written behind.' })
  @ApiResponse({ status: 400, type: ErrorResponse, description: 'Not a JSON object with a string title.' })
  @ApiResponse({ status: 503, type: ErrorResponse, description: 'Backpressure or shutting down.' })
  @ApiResponse(UNAUTHORIZED)
  @ApiResponse(UNSUPPORTED_MEDIA_TYPE)
  @ApiBearerAuth()
  async put(@Param('id') id: string, @Body() body: unknown): Promise<void> {
    await this.articles.save({ id, title: titleOf(body) });
  }

  @Patch(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Change the title only' })
  @ApiParam(ID_PARAM)
  @ApiBody({ type: ArticleBody })
  @ApiResponse({ status: 204, description: 'Accepted; written behind.' })
  @ApiResponse({ status: 400, type: ErrorResponse, description: 'Not a JSON object with a string title.' })
  @ApiResponse({ status: 404, type: ErrorResponse, description: 'No such article.' })
  @ApiResponse({ status: 503, type: ErrorResponse, description: 'Backpressure or shutting down.' })
  @ApiResponse(UNAUTHORIZED)
  @ApiResponse(UNSUPPORTED_MEDIA_TYPE)
  @ApiBearerAuth()
  async patch(@Param('id') id: string, @Body() body: unknown): Promise<void> {
    const title = titleOf(body);
    await this.found(id);
    await this.articles.update(id, { title });
  }

  @Post(':id/view')
  @HttpCode(204)
  @ApiOperation({ summary: 'Count a view', description: 'Adds 1 to `views`, applied by Postgres exactly once.' })
  @ApiParam(ID_PARAM)
  @ApiResponse({ status: 204, description: 'Counted; written behind.' })
  @ApiResponse({ status: 404, type: ErrorResponse, description: 'No such article.' })
  @ApiResponse({ status: 503, type: ErrorResponse, description: 'Backpressure or shutting down.' })
  @ApiResponse(UNAUTHORIZED)
  @ApiResponse(UNSUPPORTED_MEDIA_TYPE)
  @ApiBearerAuth()
  async view(@Param('id') id: string): Promise<void> {
    await this.found(id);
    await this.articles.increment(id, 'views', 1);
  }

  @Get(':id')
  @ApiOperation({ summary: 'Read an article, pending changes included' })
  @ApiParam(ID_PARAM)
  @ApiResponse({ status: 200, type: ArticleResponse, description: 'The article.' })
  @ApiResponse({ status: 404, type: ErrorResponse, description: 'No such article.' })
  get(@Param('id') id: string): Promise<Article> {
    return this.found(id);
  }

  private async found(id: string): Promise<Article> {
    const article = await this.articles.findOneBy(id);
    if (article === null) throw new NotFoundException(`No article "${id}".`);
    return article;
  }
}

function titleOf(body: unknown): string {
  const title = (body as { title?: unknown } | null)?.title;
  if (typeof title !== 'string') throw new BadRequestException('The body must be a JSON object like {"title": "..."}.');
  return title;
}
