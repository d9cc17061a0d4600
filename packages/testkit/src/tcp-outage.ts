// A loopback TCP relay to simulate a backend outage without touching the backend (the machine's
// PostgreSQL is shared): `cut()` drops every relayed connection and stops listening, so new
// connections are refused as by a restarting server; `restore()` listens on the same port again.
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export class TcpOutageProxy {
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();
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
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.#server = server;
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
