#!/usr/bin/env node
// Shim so npm can link the bin before the build has run. The build bundles the agent into one
// minified file (dist/abota-agent.mjs, esbuild): one module to load instead of ~70 plus valibot,
// which takes ~2.5 MiB off the agent's resident memory (README "Memory").
await import('../dist/abota-agent.mjs');
