import { defineConfig } from 'vitest/config';
import { abotaTestConfig } from '../../vitest.shared.ts';

// The shared "module" condition makes vitest pick the AWS SDK's bundler-only dist-es builds
// (extensionless ESM imports that Node cannot load); resolve them the way Node does instead.
const conditions = ['@abota/source', 'import', 'node', 'default'];

export default defineConfig({
  ...abotaTestConfig,
  test: {
    ...abotaTestConfig.test,
    // The SDK warns on every run that releases after January 2027 need Node 22 (README).
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  },
  resolve: { ...abotaTestConfig.resolve, conditions },
  ssr: { ...abotaTestConfig.ssr, resolve: { ...abotaTestConfig.ssr?.resolve, conditions } },
});
