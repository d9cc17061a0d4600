// Publisher benchmarks: `npm run bench -w @abota/publisher` (tsx bench/run.ts).
// Each bench lives in its own module; add new ones here.
//   BENCH_IMAGE_MIB (512), BENCH_CONTENT_MIB (380), BENCH_ZSTD_LEVELS ("3,19"), BENCH_CODECS=1 (sweep)
import { runReleaseBench } from './release.js';

const env = process.env;
await runReleaseBench({
  imageMiB: Number(env['BENCH_IMAGE_MIB'] ?? 512),
  contentMiB: Number(env['BENCH_CONTENT_MIB'] ?? 380),
  zstdLevels: (env['BENCH_ZSTD_LEVELS'] ?? '3,19')
    .split(',')
    .filter((s) => s !== '')
    .map(Number),
  codecSweep: env['BENCH_CODECS'] === '1',
});
