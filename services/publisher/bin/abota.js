#!/usr/bin/env node
// Shim so npm can link the bin before the TypeScript build has run.
const { main } = await import('../dist/cli.js');
process.exitCode = await main(process.argv.slice(2));
