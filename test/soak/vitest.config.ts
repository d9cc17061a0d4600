import { defineConfig, mergeConfig } from 'vitest/config';
import { abotaTestConfig } from '../../vitest.shared.ts';

// `npm run test:soak`: the long fault tests (issue 16, "at scale"); not part of `npm test`
// (the files end in .soak.ts, which the default include does not match). One file at a time:
// they measure their own run time on a 2-core machine.
export default mergeConfig(
  abotaTestConfig,
  defineConfig({
    test: {
      include: ['soak/**/*.soak.ts'],
      fileParallelism: false,
      // 220 s for 1,000 flips on a quiet machine; over 600 s at load 40 (other jobs on the two cores).
      testTimeout: 1_800_000,
      hookTimeout: 300_000,
    },
  }),
);
