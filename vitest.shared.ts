// Shared vitest settings: resolve workspace packages to their TypeScript sources
// (the "@abota/source" export condition) so tests never run against stale builds.
import { defineConfig } from 'vitest/config';

export const abotaTestConfig = defineConfig({
  resolve: { conditions: ['@abota/source', 'import', 'module', 'node', 'default'] },
  ssr: { resolve: { conditions: ['@abota/source', 'import', 'module', 'node', 'default'] } },
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
