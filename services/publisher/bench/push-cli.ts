// `abota` from source for bench/push.ts: the CLI in its own process, so GNU time measures its
// peak RSS alone (the update server runs in the bench process).
import { main } from '../src/cli.js';

process.exitCode = await main(process.argv.slice(2));
