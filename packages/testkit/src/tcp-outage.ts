// A loopback TCP relay to simulate a backend outage without touching the backend (the machine's
// PostgreSQL is shared): `cut()` drops every relayed connection and stops listening, so new
// connections are refused as by a restarting server; `restore()` listens on the same port again.
// `silence()` is the nastier fault, a network that drops packets without a word: connections stay
// open and new ones are accepted, but nothing reaches the other side until `heal()` (then what
// was held back is delivered late, as TCP's retransmissions would).
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export class TcpOutageProxy {
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();
  readonly #pairs = new Set<[Socket, Socket]>();
  #silent = false;
  private constructor(
    readonly port: number,
    readonly target: { host: string; port: number },
  ) {}

  /** Relays 127.0.0.1:<a free port> to `target`. */
  static async start(target: { host: string; port: number }): Promise<TcpOutageProxy> {
    const probe = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(0, '127.0.0.1', () => resolve((probe.address() as { port: number }).port));
    });
    await new Promise((r) => probe.close(r));
    const proxy = new TcpOutageProxy(port, target);
    await proxy.restore();
    return proxy;
  }

  get up(): boolean {
    return this.#server !== undefined;
  }

  /** Listen again on the same port (a no-op when up). */
  async restore(): Promise<void> {
    if (this.#server !== undefined) return;
    const server = createServer((client) => {
      const upstream = createConnection(this.target);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('error', () => s.destroy());
        s.on('close', () => {
          this.#sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      const pair: [Socket, Socket] = [client, upstream];
      this.#pairs.add(pair);
      client.on('close', () => this.#pairs.delete(pair));
      if (this.#silent) {
        client.pause();
        upstream.pause();
      } else client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.#server = server;
  }

  /** Packets dropped silently: nothing is relayed either way (connections stay open) until heal(). */
  silence(): void {
    this.#silent = true;
    for (const [client, upstream] of this.#pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  }

  /** The network works again: what was held back is delivered, relaying goes on. */
  heal(): void {
    this.#silent = false;
    for (const [client, upstream] of this.#pairs) client.pipe(upstream).pipe(client);
  }

  /** The outage: every open connection reset, new ones refused until restore(). */
  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.resetAndDestroy();
    this.#sockets.clear();
    if (server !== undefined) await new Promise((r) => server.close(r));
  }

  async close(): Promise<void> {
    await this.cut();
  }
}
