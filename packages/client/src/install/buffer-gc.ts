// Bounded memory while streaming an image: every network read, brotli output chunk and file read
// is a fresh Buffer whose backing store is native memory (counted only as "external"). V8
// schedules garbage collection by JS heap allocation, and the agent's heap is tiny, so dead
// Buffers pile up between collections, and glibc keeps the heap space they took (README
// "Memory"). The writers report the bytes they move; every 512 KiB a scavenge frees the young
// dead Buffers, and every 16 MiB a full collection frees the ones a scavenge promoted (a Buffer still
// in flight during two scavenges moves to the old generation, dies there moments later and
// would otherwise wait for the full GC V8 starts only after ~64 MiB of external growth).
// Measured on a 512 MiB install (test/bench/run.ts): on Node 20 scavenges every 4 MiB peaked
// at 68–71 MiB, every 1 MiB at 63.5–68 MiB, every 256 KiB at 115 MiB (the promoted pile); on
// Node 24 (zstd, 2^21 window) every 1 MiB 64.8 MiB (3 runs), every 512 KiB 63.6–64.8 MiB. A
// scavenge of this heap takes ~0.05 ms, a full GC ~6 ms under --jitless: 32 of them per 512 MiB.
// node:v8 and node:vm are loaded only when no global gc exists (the unit passes --expose-gc).

type Gc = (options?: { type?: 'minor' | 'major' }) => void;
let gc: Gc | null | undefined;

function obtainGc(): Gc | null {
  const existing = (globalThis as { gc?: Gc }).gc;
  if (typeof existing === 'function') return existing;
  try {
    // --expose-gc takes effect for contexts created afterwards; the function then works
    // everywhere (it is the isolate's collector). The global context is left untouched.
    process.getBuiltinModule('node:v8').setFlagsFromString('--expose-gc');
    const f = process.getBuiltinModule('node:vm').runInNewContext('gc') as unknown;
    return typeof f === 'function' ? (f as Gc) : null;
  } catch {
    return null;
  }
}

/**
 * Collect dead Buffers now (no-op when the runtime does not allow it): a scavenge, or a full
 * collection when `full`. (`gc()` without options is the full one; Node 20's V8 runs a scavenge
 * for `{ type: 'major' }`.)
 */
export function collectDeadBuffers(full = false): void {
  if (gc === undefined) gc = obtainGc();
  if (full) gc?.();
  else gc?.({ type: 'minor' });
}

/** Bytes of stream data (input + output) between two scavenges. */
export const SCAVENGE_EVERY_BYTES = 512 * 1024;
/** Scavenges between two full collections. */
export const SCAVENGES_PER_FULL_GC = 32;

/** Returns a function to report bytes moved through; collects as the top of this file says. */
export function bufferCollector(): (bytes: number) => void {
  let since = 0;
  let scavenges = 0;
  return (bytes) => {
    since += bytes;
    if (since < SCAVENGE_EVERY_BYTES) return;
    since = 0;
    scavenges = (scavenges + 1) % SCAVENGES_PER_FULL_GC;
    collectDeadBuffers(scavenges === 0);
  };
}
