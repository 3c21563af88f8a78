import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';

/** Where the Swagger UI is served; the document itself is at `${OPENAPI_PATH}-json`. */
export const OPENAPI_PATH = 'docs';

/** The OpenAPI document of the demo API, built from the controllers' decorators. */
export function createOpenApiDocument(app: INestApplication): OpenAPIObject {
  const config = new DocumentBuilder()
    .setTitle('nestjs-write-back demo')
    .setDescription(
      'A key-value API over the write-back cache: PUT/DELETE answer 204 once the write is accepted under the ' +
        'configured durability (memory, the fsynced write-ahead log, or Postgres with ?writeThrough=true); a ' +
        'background flusher batch-writes to Postgres. Dead letters hold rows Postgres kept rejecting.',
    )
    .setVersion('1')
    // With API_TOKEN set, mutating and /admin routes need `Authorization: Bearer <token>`.
    .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'The API_TOKEN the service was started with.' })
    .build();
  return SwaggerModule.createDocument(app, config);
}

/** Serves the Swagger UI at `/docs`, the document at `/docs-json` (and `/docs-yaml`). */
export function setupOpenApi(app: INestApplication): void {
  // A factory: the document is built on the first request, after every route is registered.
  SwaggerModule.setup(OPENAPI_PATH, app, () => createOpenApiDocument(app));
}
