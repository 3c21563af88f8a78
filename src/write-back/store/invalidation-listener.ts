import pg from 'pg';
import { backoffDelay } from '../backoff.js';
import { errorMessage } from '../write-back.errors.js';

/** `off`: single instance, nothing to hear; `connecting`: before the first LISTEN; `listening`; `down`: reconnecting (with backoff). */
export type ListenerState = 'off' | 'connecting' | 'listening' | 'down';

/** What the listener acts on: the cache. */
export interface InvalidationTarget {
  /** Another instance committed `version` of `key` (`delta`: applied a delta at that version). */
  invalidate(key: string, version: number, delta?: boolean): void;
  /** A notification named no keys (`*`): every clean copy may be stale. */
  invalidateAll(): void;
  /** False from the moment notifications may be missed, true once LISTEN is in place again. */
  setTrusted(trusted: boolean): void;
}

export interface ListenerLogger {
  log(message: string): void;
  warn(message: string): void;
}

export interface InvalidationListenerStats {
  state: ListenerState;
  /** Notifications of other instances received. */
  notifications: number;
  /** Changes (key, version) they announced. */
  changes: number;
  /** Times the listen connection was lost. */
  disconnects: number;
  /** Commit (the sender's clock at NOTIFY) to receipt, ms: the last one and the p99 of the recent ones. */
  lagMs: { last: number; p99: number };
}

/** A listen connection that answers no query for this long is treated as lost (a silent partition). */
const HEARTBEAT_TIMEOUT_MS = 5000;
const LAG_WINDOW = 1024;

/**
 * Holds one dedicated connection (not from the pool, and not through a transaction pooler: LISTEN is session
 * state) that LISTENs to the tables' channel, and applies other instances' commits to the cache. While the
 * connection is down, notifications are missed, so the cache is told not to trust its clean copies until LISTEN is
 * back; reconnects back off exponentially. A heartbeat query every `heartbeatMs` finds a connection that died
 * silently.
 */
export class InvalidationListener {
  private client: pg.Client | undefined;
  private currentState: ListenerState = 'connecting';
  private closed = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private readonly lags = new Float64Array(LAG_WINDOW);
  private lagCount = 0;
  private readonly counters = { notifications: 0, changes: 0, disconnects: 0 };
  private readonly ownPrefix: string;

  constructor(
    private readonly connection: pg.ClientConfig,
    private readonly channel: string,
    /** This instance's origin token: its own notifications start with it and are skipped unparsed. */
    origin: string,
    private readonly target: InvalidationTarget,
    private readonly logger: ListenerLogger,
    private readonly options: { retryBaseDelayMs: number; retryMaxDelayMs: number; heartbeatMs: number },
    private readonly now: () => number = Date.now,
  ) {
    this.ownPrefix = `${origin} `;
  }

  get state(): ListenerState {
    return this.currentState;
  }

  stats(): InvalidationListenerStats {
    return { state: this.currentState, ...this.counters, lagMs: { last: this.lastLag(), p99: this.lagP99() } };
  }

  /** Connects and LISTENs; resolves after the first attempt, successful or not (then it retries in the background). */
  async start(): Promise<void> {
    this.target.setTrusted(false);
    await this.connect();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.heartbeatTimer);
    const client = this.client;
    this.client = undefined;
    if (client !== undefined) await client.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ application_name: 'nestjs-write-back:listen', keepAlive: true, ...this.connection });
    this.client = client;
    client.on('notification', (message) => this.onNotification(message));
    client.on('error', (error) => this.lost(client, error));
    // This plain Error and the heartbeat's are only logged by `lost`, which reconnects: no caller sees them.
    client.on('end', () => this.lost(client, new Error('connection ended')));
    try {
      await client.connect();
      await client.query(`LISTEN "${this.channel}"`);
    } catch (error) {
      this.lost(client, error);
      return;
    }
    if (this.client !== client || this.closed) return;
    this.failures = 0;
    this.currentState = 'listening';
    // Anything committed before this point and missed meanwhile: the cache starts over from Postgres.
    this.target.setTrusted(true);
    this.scheduleHeartbeat(client);
  }

  /** The connection `client` failed: stop trusting the cache, reconnect with backoff. Idempotent per client. */
  private lost(client: pg.Client, error: unknown): void {
    if (this.client !== client) return;
    this.client = undefined;
    clearTimeout(this.heartbeatTimer);
    client.removeAllListeners('notification');
    client.on('error', () => undefined);
    void client.end().catch(() => undefined);
    if (this.closed) return;
    const wasListening = this.currentState === 'listening';
    this.currentState = 'down';
    this.target.setTrusted(false);
    this.failures++;
    if (wasListening) this.counters.disconnects++;
    const delay = backoffDelay(this.failures, this.options.retryBaseDelayMs, this.options.retryMaxDelayMs);
    this.logger.warn(
      `Invalidation listener ${wasListening ? 'lost its connection' : 'could not listen'} (${errorMessage(error)}); ` +
        `reads bypass the clean cache until it listens again, retry in ${delay} ms`,
    );
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.connect().then(() => this.logReconnected());
    }, delay);
    this.retryTimer.unref();
  }

  private logReconnected(): void {
    if (this.currentState === 'listening') this.logger.log('Invalidation listener is listening again');
  }

  private scheduleHeartbeat(client: pg.Client): void {
    this.heartbeatTimer = setTimeout(() => {
      if (this.client !== client) return;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer to a heartbeat within ${HEARTBEAT_TIMEOUT_MS} ms`)), HEARTBEAT_TIMEOUT_MS);
      });
      Promise.race([client.query('SELECT 1'), timeout]).then(
        () => {
          clearTimeout(timer);
          if (this.client === client) this.scheduleHeartbeat(client);
        },
        (error: unknown) => {
          clearTimeout(timer);
          // A silent partition: the socket must go, or its late answer would be read as alive. lost() ends the
          // client, and pg's end() destroys the socket of a client whose query is still in the air.
          this.lost(client, error);
        },
      );
    }, this.options.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  private onNotification(message: pg.Notification): void {
    const payload = message.payload;
    if (message.channel !== this.channel || payload === undefined || payload.startsWith(this.ownPrefix)) return;
    try {
      const first = payload.indexOf(' ');
      const second = payload.indexOf(' ', first + 1);
      const sentAt = Number(payload.slice(first + 1, second));
      const body = payload.slice(second + 1);
      this.counters.notifications++;
      this.recordLag(this.now() - sentAt);
      if (body === '*') {
        this.target.invalidateAll();
        return;
      }
      const changes = JSON.parse(body) as (string | number)[];
      for (let i = 0; i + 1 < changes.length; i += 2) {
        const version = changes[i + 1] as number;
        this.target.invalidate(changes[i] as string, Math.abs(version), version < 0);
      }
      this.counters.changes += changes.length >>> 1;
    } catch (error) {
      // Not ours to understand: a stale copy is worse than an empty cache.
      this.logger.warn(`Unreadable invalidation notification (${errorMessage(error)}); dropping every clean copy`);
      this.target.invalidateAll();
    }
  }

  private recordLag(ms: number): void {
    this.lags[this.lagCount % LAG_WINDOW] = Math.max(0, ms);
    this.lagCount++;
  }

  private lastLag(): number {
    return this.lagCount === 0 ? 0 : this.lags[(this.lagCount - 1) % LAG_WINDOW];
  }

  private lagP99(): number {
    const n = Math.min(this.lagCount, LAG_WINDOW);
    if (n === 0) return 0;
    const sorted = Array.from(this.lags.subarray(0, n)).sort((a, b) => a - b);
    return sorted[Math.min(n - 1, Math.floor(n * 0.99))];
  }
}
