import { defineConfig } from 'vitest/config';
import { abotaTestConfig } from '../vitest.shared.ts';

// As in services/update-server (the server, and through it the AWS SDK, is loaded here too):
// no "module" condition — it would make vitest pick the AWS SDK's bundler-only dist-es builds (extensionless ESM imports). And no explicit "import": vitest
// passes these to Node as --conditions, and a global "import" makes pg's require('pg-pool')
// load pg-pool's ESM build (Node adds import/require by itself per call site).
const conditions = ['@abota/source', 'node', 'default'];

export default defineConfig({
  ...abotaTestConfig,
  test: {
    ...abotaTestConfig.test,
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  },
  resolve: { ...abotaTestConfig.resolve, conditions },
  ssr: { ...abotaTestConfig.ssr, resolve: { ...abotaTestConfig.ssr?.resolve, conditions } },
});
