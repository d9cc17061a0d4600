import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { readSmallFile } from './atomic-file.js';

const tooLarge = (size: number) => new Error(`too large: ${size}`);

describe('readSmallFile', () => {
  it('reads a pseudo file whose stat size is 0 (/proc/cmdline on a real device)', async () => {
    const expected = await readFile('/proc/self/status');
    const bytes = await readSmallFile('/proc/self/status', 64 * 1024, tooLarge);
    expect(Buffer.from(bytes!).toString('utf8')).toMatch(/^Name:/);
    expect(bytes!.length).toBeGreaterThan(0);
    expect(Math.abs(bytes!.length - expected.length)).toBeLessThan(256); // a few counters move
  });

  it('refuses a pseudo file longer than the limit although its stat size is 0', async () => {
    await expect(readSmallFile('/proc/self/status', 64, tooLarge)).rejects.toThrow(/too large: 65/);
  });

  it('reads a regular file exactly and refuses one over the limit by its size', async () => {
    const bytes = await readSmallFile(new URL(import.meta.url).pathname, 1024 * 1024, tooLarge);
    expect(Buffer.from(bytes!)).toEqual(await readFile(new URL(import.meta.url).pathname));
    await expect(readSmallFile(new URL(import.meta.url).pathname, 10, tooLarge)).rejects.toThrow(/too large/);
  });

  it('returns undefined for a missing file', async () => {
    expect(await readSmallFile('/nonexistent/abota', 10, tooLarge)).toBeUndefined();
  });
});
