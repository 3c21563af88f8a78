import type { Server } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

/** Node's default limit of the request line plus headers. */
const NODE_MAX_HEADER_BYTES = 16 * 1024;
/** A UTF-16 unit of a key is at most 9 bytes URL-encoded (a 3-byte UTF-8 sequence, `%XX` each). */
const MAX_ENCODED_BYTES_PER_KEY_UNIT = 9;

/**
 * Makes the demo's HTTP server answer every request it refuses before routing in the demo's error shape:
 *
 * - the header limit is raised so a request line with any key up to `maxKeyLength` (URL-encoded) fits: an
 *   over-long key then reaches the service and gets its 400 naming `maxKeyLength`, instead of Node's bare 431;
 * - what Node still refuses (headers over that limit, a malformed request) gets a JSON body
 *   `{ statusCode, error, message }` and the connection is closed (Node's own answer has no body).
 */
export function hardenHttpServer(server: Server, maxKeyLength: number): void {
  const maxHeaderSize = NODE_MAX_HEADER_BYTES + maxKeyLength * MAX_ENCODED_BYTES_PER_KEY_UNIT;
  // The `maxHeaderSize` option of http.createServer; Node's parser reads it from the server for each new
  // connection, so it can be set after Nest created the server (the typings only know the option).
  (server as Server & { maxHeaderSize: number }).maxHeaderSize = maxHeaderSize;
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable || (socket as { _httpMessage?: unknown })._httpMessage) {
      // A response is already under way (or the peer is gone): nothing sensible can be written.
      socket.destroy();
      return;
    }
    const tooLarge = error.code === 'HPE_HEADER_OVERFLOW';
    const statusCode = tooLarge ? 431 : error.code === 'HPE_URI_TOO_LONG' ? 414 : 400;
    const message = tooLarge
      ? `The request line and headers are over ${maxHeaderSize} bytes; a key is at most maxKeyLength (${maxKeyLength}) characters.`
      : 'The request is not valid HTTP/1.1.';
    const body = JSON.stringify({ statusCode, error: STATUS_CODES[statusCode], message });
    socket.end(
      `HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
}
