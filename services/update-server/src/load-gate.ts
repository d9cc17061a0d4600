// Load shedding (issue 16): past `limit` requests in progress on /v1/*, answer 503 + Retry-After
// at once rather than queue behind a saturated database. Two doors, one count:
// - the app's middleware (app.ts) counts what it admits and sheds what comes past the limit —
//   everything that runs createApp, tests included;
// - abota-server also checks the count in node's request listener, before the request becomes a
//   fetch Request and before Hono routes it (preParse below): a refusal there costs a header
//   write, so the process keeps its event loop for what it admitted when the offered load is a
//   multiple of what it can serve.
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { errorBody } from './errors.js';

export class LoadGate {
  inFlight = 0;
  readonly limit: number;
  constructor(limit: number) {
    this.limit = limit > 0 ? limit : Number.POSITIVE_INFINITY;
  }
  get full(): boolean {
    return this.inFlight >= this.limit;
  }
  busyMessage(): string {
    return `server busy (${this.inFlight} requests in progress); retry after the Retry-After seconds`;
  }
}

/** Retry-After for a shed request: 1-5 s, spread so the retries do not come back as one wave. */
export const shedRetryAfterSeconds = (): number => 1 + Math.floor(Math.random() * 5);

/** Only the API is shed; /healthz, /readyz and /metrics always answer (a probe must not fail from load). */
const isSheddable = (url: string | undefined): boolean => url?.startsWith('/v1/') === true;

/** Wrap node's request listener: refuse with 503 before parsing when the gate is full. */
export function preParse(gate: LoadGate, onShed: () => void, listener: RequestListener): RequestListener {
  return (req: IncomingMessage, res: ServerResponse) => {
    if (!gate.full || !isSheddable(req.url)) {
      listener(req, res);
      return;
    }
    onShed();
    const body = JSON.stringify(errorBody('ERR_UNAVAILABLE', gate.busyMessage()));
    res.writeHead(503, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'retry-after': String(shedRetryAfterSeconds()),
    });
    // node discards the unread request body after the response so the connection can be reused.
    res.end(body);
  };
}
