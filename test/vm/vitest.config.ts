// `npm run test:vm`: the real-VM tests (QEMU + OVMF + GRUB + the Debian cloud kernel), two files
// at a time: each VM has one vCPU, one core under TCG, and a 2-core machine runs two.
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
      maxWorkers: 2,
    },
  }),
);
