import net from 'node:net';

/** What the proxy does with new connections. */
export type ProxyMode = 'pass' | 'refuse' | 'blackhole';

interface Link {
  client: net.Socket;
  upstream: net.Socket | undefined;
  /** Bytes are dropped both ways and nothing is ever closed (a silent network partition). */
  silent: boolean;
  /** The next bytes the client sends reset the link instead of passing (see {@link TcpProxy.resetOnNextSend}). */
  resetOnSend: boolean;
}

/** One direction of a link: chunks held back by the added latency, written in order. */
class DelayedPipe {
  /** `null` is the end of the stream: `to` is ended once every chunk before it is written. */
  private readonly queue: { due: number; chunk: Buffer | null }[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    private readonly latencyMs: () => number,
    private readonly silent: () => boolean,
    /** Called with each chunk before anything else; true drops it. */
    private readonly intercept: () => boolean = () => false,
  ) {
    from.on('data', (chunk: Buffer) => this.push(chunk));
    from.on('end', () => this.push(null));
  }

  private push(chunk: Buffer | null): void {
    if (this.silent() || this.intercept()) return;
    const latency = this.latencyMs();
    if (latency <= 0 && this.queue.length === 0) {
      this.write(chunk);
      return;
    }
    this.queue.push({ due: Date.now() + latency, chunk });
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== undefined || this.queue.length === 0) return;
    const wait = Math.max(0, this.queue[0].due - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const now = Date.now();
      while (this.queue.length > 0 && this.queue[0].due <= now) this.write(this.queue.shift()!.chunk);
      this.schedule();
    }, wait);
  }

  private write(chunk: Buffer | null): void {
    if (this.to.destroyed || this.silent()) return;
    if (chunk === null) {
      this.to.end();
      return;
    }
    // Honour backpressure: stop reading the other side until this one drains.
    if (!this.to.write(chunk)) {
      this.from.pause();
      this.to.once('drain', () => this.from.resume());
    }
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
  }
}

/**
 * A fault-injection TCP proxy for tests, between a client (the write-back service) and Postgres:
 * pass bytes through, add latency per chunk in both directions, cut every open connection, refuse new ones,
 * drop bytes silently (a partition), and restore. Listens on 127.0.0.1, port 0.
 */
export class TcpProxy {
  /** Connections accepted and linked to the target since start. */
  accepted = 0;
  /** Connections refused (accepted and reset at once) since start. */
  refused = 0;
  /** Connections destroyed by {@link cut} since start. */
  cutCount = 0;

  private mode: ProxyMode = 'pass';
  private latency = 0;
  private readonly links = new Set<Link>();

  private constructor(
    private readonly server: net.Server,
    readonly targetUrl: string,
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  /** Starts a proxy in front of the host and port of the postgres URL `targetUrl`. */
  static async start(targetUrl: string): Promise<TcpProxy> {
    const parsed = new URL(targetUrl);
    const host = parsed.hostname.replace(/^\[|\]$/g, '');
    const port = Number(parsed.port || 5432);
    const server = net.createServer({ noDelay: true });
    const proxy = new TcpProxy(server, targetUrl, host, port);
    server.on('connection', (socket) => proxy.onConnection(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return proxy;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** The target URL with host and port replaced by the proxy's (same user, password, database and query). */
  get url(): string {
    const url = new URL(this.targetUrl);
    url.hostname = '127.0.0.1';
    url.port = String(this.port);
    return url.toString();
  }

  /** Open proxied connections. */
  get openConnections(): number {
    return this.links.size;
  }

  get currentMode(): ProxyMode {
    return this.mode;
  }

  get latencyMs(): number {
    return this.latency;
  }

  /** Delays every chunk by `ms` in each direction (0: none). Applies to open connections too. */
  setLatency(ms: number): void {
    this.latency = Math.max(0, ms);
  }

  /** Destroys every open connection, both sides. Returns how many were cut. */
  cut(): number {
    const count = this.links.size;
    for (const link of [...this.links]) this.closeLink(link, true);
    this.cutCount += count;
    return count;
  }

  /**
   * Every open connection resets (RST both ways) as soon as the client next sends on it; until then it looks
   * healthy. What a pooled connection does after a failover or a NAT that forgot it: the client learns that it is
   * dead only from the query it sends. New connections pass. Returns how many links are armed.
   */
  resetOnNextSend(): number {
    for (const link of this.links) link.resetOnSend = true;
    return this.links.size;
  }

  /** New connections are accepted and reset at once (ECONNRESET for the client); open ones stay. */
  refuse(): void {
    this.mode = 'refuse';
  }

  /** Refuse new connections and cut the open ones: the database is unreachable (and says so at once). */
  outage(): void {
    this.refuse();
    this.cut();
  }

  /**
   * A silent network partition: every open connection and every new one drops its bytes both ways and is
   * never closed, so a client waits for an answer that never comes (no RST, no FIN). Connections that were
   * open during it stay silent after {@link restore}, like connections to a server that failed over or
   * through a NAT that lost their state; only {@link cut} ends them.
   */
  blackhole(): void {
    this.mode = 'blackhole';
    for (const link of this.links) link.silent = true;
  }

  /** Back to plain pass-through: new connections are accepted and no latency is added. */
  restore(): void {
    this.mode = 'pass';
    this.latency = 0;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(client: net.Socket): void {
    if (this.mode === 'refuse') {
      this.refused++;
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    this.accepted++;
    if (this.mode === 'blackhole') {
      // Accepted by the kernel, answered by nobody.
      const link: Link = { client, upstream: undefined, silent: true, resetOnSend: false };
      this.links.add(link);
      client.on('error', () => this.closeLink(link, false));
      client.on('close', () => this.links.delete(link));
      return;
    }
    const upstream = net.connect({ host: this.targetHost, port: this.targetPort, noDelay: true });
    const link: Link = { client, upstream, silent: false, resetOnSend: false };
    this.links.add(link);
    const silent = () => link.silent;
    const resetOnSend = () => {
      if (!link.resetOnSend) return false;
      this.closeLink(link, true);
      return true;
    };
    const pipes = [
      new DelayedPipe(client, upstream, () => this.latency, silent, resetOnSend),
      new DelayedPipe(upstream, client, () => this.latency, silent),
    ];
    // A failing side fails the other; an orderly end is passed on (after the latency) by the pipes.
    const fail = () => this.closeLink(link, false);
    client.on('error', fail);
    upstream.on('error', fail);
    const closed = () => {
      if (!client.destroyed || !upstream.destroyed) return;
      for (const pipe of pipes) pipe.stop();
      this.links.delete(link);
    };
    client.on('close', closed);
    upstream.on('close', closed);
  }

  private closeLink(link: Link, reset: boolean): void {
    if (!this.links.delete(link)) return;
    for (const socket of [link.client, link.upstream]) {
      if (socket === undefined || socket.destroyed) continue;
      if (reset) socket.resetAndDestroy();
      else socket.destroy();
    }
  }
}
