// Bounded memory while streaming an image: every network read, brotli output chunk and file read
// is a fresh Buffer. V8 schedules garbage collection by JS heap allocation, and the agent's heap
// is tiny, so those backing stores (native memory, counted only as "external") pile up —
// measured 20–35 MiB of dead Buffers at the RSS peak of an install (README "Memory"). A minor GC
// (scavenge, ~0.5 ms on this heap) frees the young ones; the writer asks for one every few MiB.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Gc = (options?: { type?: 'minor' | 'major' }) => void;
let gc: Gc | null | undefined;

function obtainGc(): Gc | null {
  const existing = (globalThis as { gc?: Gc }).gc;
  if (typeof existing === 'function') return existing;
  try {
    // --expose-gc takes effect for contexts created afterwards; the function then works
    // everywhere (it is the isolate's collector). The global context is left untouched.
    setFlagsFromString('--expose-gc');
    const f = runInNewContext('gc') as unknown;
    return typeof f === 'function' ? (f as Gc) : null;
  } catch {
    return null;
  }
}

/** Collect dead young Buffers now (no-op when the runtime does not allow it). */
export function collectYoungBuffers(): void {
  if (gc === undefined) gc = obtainGc();
  gc?.({ type: 'minor' });
}

/** Calls collectYoungBuffers() once per `everyBytes` reported through the returned function. */
export function bufferCollector(everyBytes: number): (bytes: number) => void {
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since >= everyBytes) {
      since = 0;
      collectYoungBuffers();
    }
  };
}
