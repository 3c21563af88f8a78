import { Injectable, type OnModuleDestroy } from '@nestjs/common';

interface Response {
  setHeader(name: string, value: string): unknown;
  writeHead(...args: unknown[]): unknown;
}

/**
 * Lets the HTTP server close promptly at shutdown. Nest closes the server after the write-back drain; Node's
 * `server.close()` only drops connections that are idle at that moment, so a client that kept a keep-alive
 * connection busy during the drain (a load balancer, the kubelet's probes) would hold the process open for up to
 * `keepAliveTimeout` (5 s) more. From the first shutdown hook on, every answer carries `Connection: close`, so
 * each connection ends with its current request and the drain can still be watched on `/health/ready`.
 */
@Injectable()
export class KeepAliveDrain implements OnModuleDestroy {
  private closing = false;

  /** Destroy hooks run before `beforeApplicationShutdown`, where the write-back drain starts. */
  onModuleDestroy(): void {
    this.closing = true;
  }

  /** Express middleware, for `app.use()`. */
  readonly middleware = (_request: unknown, response: Response, next: () => void): void => {
    if (this.closing) {
      response.setHeader('Connection', 'close');
    } else {
      // A request that arrived before the shutdown but is answered after it (a readiness check waiting on its
      // query when the signal came) closes its connection too: decided when the answer's head is written.
      const writeHead = response.writeHead;
      response.writeHead = (...args: unknown[]) => {
        if (this.closing) response.setHeader('Connection', 'close');
        return writeHead.apply(response, args);
      };
    }
    next();
  };
}
