#!/usr/bin/env node
// Shim so npm can link the bin before the build has run. The build bundles the agent into one
// minified CommonJS file (dist/abota-agent.cjs, esbuild): one module to load instead of ~70 plus
// valibot, which takes ~2.5 MiB off the agent's resident memory (README "Memory"). This shim is
// an ES module, so node starts its ESM loader for it (+1.4 MiB): devices run the bundle directly
// (the agent package's bin/abota-agent runs `node lib/abota-agent.cjs`; test/bench/run.ts too).
await import('../dist/abota-agent.cjs');
