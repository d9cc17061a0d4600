#!/usr/bin/env node
// Shim so npm can link the bin before the TypeScript build has run.
await import('../dist/agent-cli.js');
