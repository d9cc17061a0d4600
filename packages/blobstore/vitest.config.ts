import { defineConfig } from 'vitest/config';
import { abotaTestConfig } from '../../vitest.shared.ts';

// The shared "module" condition makes vitest pick the AWS SDK's bundler-only dist-es builds
// (extensionless ESM imports that Node cannot load); resolve them the way Node does instead.
const conditions = ['@abota/source', 'import', 'node', 'default'];

export default defineConfig({
  ...abotaTestConfig,
  resolve: { ...abotaTestConfig.resolve, conditions },
  ssr: { ...abotaTestConfig.ssr, resolve: { ...abotaTestConfig.ssr?.resolve, conditions } },
});
