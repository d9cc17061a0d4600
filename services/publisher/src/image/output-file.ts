// Output files appear whole or not at all: builders write `<out>.partial-<random>` next to the
// final name and rename it at the end; any failure removes the partial file.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { ImageError } from './errors.js';

/** --out must not exist and its directory must. */
export async function assertOutAbsent(out: string): Promise<void> {
  if (await stat(out).catch(() => undefined)) {
    throw new ImageError(
      'ERR_IMAGE_OUT_EXISTS',
      `--out ${out} already exists; remove it or choose another name`,
    );
  }
  const parent = await stat(dirname(out)).catch(() => undefined);
  if (!parent?.isDirectory()) {
    throw new ImageError('ERR_IMAGE_OUT_EXISTS', `--out ${out}: directory ${dirname(out)} does not exist`);
  }
}

/**
 * Run `build(partialPath, scratchDir)` and rename the partial file to `out` when it resolves.
 * The scratch directory (for unpacked trees, staging) is removed in every case.
 */
export async function writeOutput<T>(
  out: string,
  build: (partialPath: string, scratchDir: string) => Promise<T>,
): Promise<T> {
  await assertOutAbsent(out);
  const partial = join(dirname(out), `.${basename(out)}.partial-${randomBytes(4).toString('hex')}`);
  const scratch = await mkdtemp(join(tmpdir(), 'abota-image-'));
  try {
    const result = await build(partial, scratch);
    await rename(partial, out);
    return result;
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
