// Regenerates manifest.schema.json from the zod schema (the single source of truth):
//   npx tsx scripts/write-json-schema.ts
// src/manifest-schema.test.ts fails when the committed file is stale.
import { writeFile } from 'node:fs/promises';
import { manifestJsonSchema } from '../src/index.js';

await writeFile(
  new URL('../manifest.schema.json', import.meta.url),
  `${JSON.stringify(manifestJsonSchema(), null, 2)}\n`,
);
