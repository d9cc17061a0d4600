// Bundles the agent into one minified file, dist/abota-agent.cjs (README "Memory": one module to
// load instead of ~70 plus valibot). CommonJS, not ESM: a process whose entry is an ES module
// starts node's ESM loader, 1.4 MiB more resident for the agent on Node 24 (VmHWM, unit flags);
// import.meta.url (verity's worker entry, not on the agent's paths) is the bundle's file URL. Stamps the bundle with its version and build time
// (src/build-info.ts): `abota-agent --version` prints them and `doctor` uses the build time as the
// earliest date the device clock may show. SOURCE_DATE_EPOCH pins the time for reproducible builds.
import { readFileSync } from 'node:fs';
import { build } from 'esbuild';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
// The syntax target follows the oldest Node the package supports (engines.node, e.g. ">=20.19").
const minimum = /(\d+)(?:\.(\d+))?/.exec(pkg.engines.node);
if (minimum === null) throw new Error(`package.json engines.node "${pkg.engines.node}" names no version`);
const epoch = process.env.SOURCE_DATE_EPOCH;
const builtAt = new Date(epoch === undefined ? Date.now() : Number(epoch) * 1000);
if (Number.isNaN(builtAt.getTime())) throw new Error(`SOURCE_DATE_EPOCH "${epoch}" is not a number`);

await build({
  entryPoints: ['dist/agent-cli.js'],
  outfile: 'dist/abota-agent.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  banner: { js: 'var __abotaImportMetaUrl=require("node:url").pathToFileURL(__filename).href;' },
  target: `node${minimum[1]}${minimum[2] === undefined ? '' : `.${minimum[2]}`}`,
  minify: true,
  keepNames: true,
  legalComments: 'eof',
  sourcemap: true,
  logLevel: 'warning',
  define: {
    'import.meta.url': '__abotaImportMetaUrl',
    ABOTA_AGENT_VERSION: JSON.stringify(pkg.version),
    ABOTA_AGENT_BUILT_AT: JSON.stringify(builtAt.toISOString()),
  },
});
