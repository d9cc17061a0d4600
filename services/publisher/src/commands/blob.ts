// Blobs in the server's store (artifacts, hash trees, deltas; content-addressed by SHA-256):
// `blob show` (is it there, how large) and `blob delete` (only when no release references it;
// the server refuses otherwise with ERR_BLOB_IN_USE).
import { BlobInfoSchema } from '@abota/update-server/api';
import type { Command } from 'commander';
import { printJson } from '../output.js';
import { connectFromEnvironment, readJson, type ServerFlags } from '../server-api/client.js';
import { commandGroup, usage, withServerOptions } from './server-flags.js';

/** "sha256:<hex>" or "<hex>" → the 64 lower-case hex digits the blob routes take. */
export function blobHex(text: string): string {
  const hex = text.startsWith('sha256:') ? text.slice('sha256:'.length) : text;
  if (!/^[0-9a-f]{64}$/.test(hex))
    throw usage(`blob ${JSON.stringify(text)}: expected sha256:<64 lower-case hex>`);
  return hex;
}

export function registerBlobCommands(program: Command): void {
  const blob = commandGroup(program, 'blob', "content-addressed blobs in the server's store");

  withServerOptions(
    blob
      .command('show')
      .description('is this blob in the store, and how large is it')
      .argument('<digest>', 'sha256:<hex> (as in a manifest or `abota release show`)'),
  ).action(async (digest: string, flags: ServerFlags) => {
    const hex = blobHex(digest);
    const api = connectFromEnvironment(flags).api();
    const info = await readJson(
      await api.v1.admin.blobs.sha256[':hex'].$get({ param: { hex } }),
      BlobInfoSchema,
    );
    if (flags.json === true) return printJson({ ok: true, blob: info });
    process.stdout.write(`${info.digest} ${info.sizeBytes} bytes\n`);
  });

  withServerOptions(
    blob
      .command('delete')
      .description('delete a blob no release references (as artifact, hash tree or registered delta)')
      .argument('<digest>', 'sha256:<hex>'),
  ).action(async (digest: string, flags: ServerFlags) => {
    const hex = blobHex(digest);
    const api = connectFromEnvironment(flags).api();
    const info = await readJson(
      await api.v1.admin.blobs.sha256[':hex'].$delete({ param: { hex } }),
      BlobInfoSchema,
    );
    if (flags.json === true) return printJson({ ok: true, blob: info });
    process.stdout.write(`deleted ${info.digest} (${info.sizeBytes} bytes)\n`);
  });
}
