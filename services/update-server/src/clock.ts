// The server's one source of "now" (a test passes its own): its own module, so the pure parts
// that need the time (rollout/engine.ts) do not import the request context (context.ts).
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
