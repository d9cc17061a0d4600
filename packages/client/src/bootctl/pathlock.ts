// In-process serialisation of read–modify–write cycles on one boot-state file, so two calls
// of the agent (say a status query's markGood and an install's setTryOnce) cannot interleave
// and lose one update. Other processes are not covered: the agent is the single writer.
import { resolve } from 'node:path';

const tails = new Map<string, Promise<unknown>>();

export async function withPathLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const key = resolve(path);
  const previous = tails.get(key) ?? Promise.resolve();
  const run = previous.then(fn, fn);
  const tail = run.catch(() => {});
  tails.set(key, tail);
  try {
    return await run;
  } finally {
    if (tails.get(key) === tail) tails.delete(key);
  }
}
