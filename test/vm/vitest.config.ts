// `npm run test:vm`: the real-VM tests (QEMU + OVMF + GRUB + the Debian cloud kernel), one file
// at a time: each boot takes a whole core under TCG.
import { defineConfig, mergeConfig } from 'vitest/config';
import { abotaTestConfig } from '../../vitest.shared.ts';

export default mergeConfig(
  abotaTestConfig,
  defineConfig({
    test: {
      root: new URL('.', import.meta.url).pathname,
      include: ['**/*.test.ts'],
      testTimeout: 600_000,
      hookTimeout: 600_000,
      maxWorkers: 1,
      fileParallelism: false,
    },
  }),
);
