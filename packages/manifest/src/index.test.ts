// @abota/manifest must run in any JavaScript runtime (docs/architecture.md "Packages and
// boundaries"): no Node built-ins in the shipped sources, so the server can move to an edge runtime
// and browsers can verify.
import { readdir, readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';

describe('runtime portability', () => {
  it('has no node: or Node built-in imports, require() or process/Buffer use in src (tests excluded)', async () => {
    const dir = new URL('.', import.meta.url);
    const sources = (await readdir(dir)).filter((name) => name.endsWith('.ts') && !name.endsWith('.test.ts'));
    expect(sources.length).toBeGreaterThan(5);
    for (const name of sources) {
      const text = await readFile(new URL(name, dir), 'utf8');
      expect(text, name).not.toMatch(
        /from ['"]node:|from ['"](fs|path|crypto|os|buffer|stream)['"]|require\(/,
      );
      expect(text, name).not.toMatch(/\bprocess\.|\bBuffer\./);
    }
  });
});
