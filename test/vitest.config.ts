import { configDefaults, defineConfig, mergeConfig } from 'vitest/config';
import { abotaTestConfig } from '../vitest.shared.ts';

// test/vm/ boots real VMs: it runs in `npm run test:vm` (its own config), not in `npm test`.
export default mergeConfig(
  abotaTestConfig,
  defineConfig({ test: { exclude: [...configDefaults.exclude, 'vm/**'] } }),
);
