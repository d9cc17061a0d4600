// drizzle-kit configuration: `npx drizzle-kit generate` writes the one migration set into
// ./drizzle, applied at start-up by both the PGlite and the node-postgres migrators.
import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema.ts',
  out: './drizzle',
});
