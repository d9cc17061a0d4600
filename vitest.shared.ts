// Shared vitest settings: resolve workspace packages to their TypeScript sources
// (the "@abota/source" export condition) so tests never run against stale builds. No "module"
// condition (it picks the AWS SDK's bundler-only builds) and no explicit "import" (vitest passes
// conditions to Node, and a global "import" makes pg load pg-pool's ESM build from require()).
import { defineConfig } from 'vitest/config';
import { requireNode } from './scripts/require-node.mjs';

// `npx vitest` in a workspace on an older node stops here with what to do (.node-version).
requireNode();

export const abotaTestConfig = defineConfig({
  resolve: { conditions: ['@abota/source', 'node', 'default'] },
  ssr: { resolve: { conditions: ['@abota/source', 'node', 'default'] } },
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    passWithNoTests: true,
    // The JSON report feeds the repository-wide closing line printed by scripts/test.mjs.
    reporters: ['default', ['json', { outputFile: '.vitest/results.json' }]],
  },
});
