// `abota product create|set|set-root|list|show`: products on an update server and their trust
// roots. Each action is one typed admin call (../server-api) and prints the answer for a person
// or, with --json, as one JSON document. Server errors print as `abota: CODE: message`.
import { readFile, stat } from 'node:fs/promises';
import { printJson } from '../output.js';
import { type ApiSchemas, connectFromEnvironment, readJson, type ServerFlags } from '../server-api/client.js';
import { AdminApiError } from '../server-api/error.js';
import { checkedId, formatTable } from './server-flags.js';

/** root.json is a small signed document; the server refuses anything over its 1 MiB JSON limit. */
const MAX_ROOT_FILE_BYTES = 1024 * 1024;

async function readRootFile(path: string): Promise<unknown> {
  const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new AdminApiError(
      'ERR_USAGE',
      `--root ${path}: ${err.code === 'ENOENT' ? 'not found (give the root.json of `abota keys init`)' : err.message}`,
    );
  });
  if (!info.isFile() || info.size > MAX_ROOT_FILE_BYTES) {
    throw new AdminApiError(
      'ERR_USAGE',
      `--root ${path}: not a root.json file (at most ${MAX_ROOT_FILE_BYTES} bytes)`,
    );
  }
  try {
    return JSON.parse(await readFile(path, 'utf8')) as unknown;
  } catch {
    throw new AdminApiError('ERR_USAGE', `--root ${path}: not JSON (expected the root.json General JWS)`);
  }
}

const ProductList = (s: ApiSchemas) => s.listOf(s.ProductSchema);

/** `abota product create ID --root root.json` */
export async function create(
  id: string,
  flags: ServerFlags & { root: string; description?: string },
): Promise<void> {
  const trustRoot = await readRootFile(flags.root);
  const client = connectFromEnvironment(flags);
  // Not repeated: a retry after a lost answer would report ERR_CONFLICT for our own creation.
  const res = await client.api().v1.admin.products.$post({
    json: { id, trustRoot, ...(flags.description === undefined ? {} : { description: flags.description }) },
  });
  const created = await readJson(res, (s) => s.ProductSchema);
  if (flags.json === true) printJson({ ok: true, product: created });
  else
    process.stdout.write(
      `created product ${created.id} on ${client.serverUrl.origin} (trust root v${created.trustRootVersion})\n`,
    );
}

/** `abota product set-root ID --root root.json`: trust root rotation */
export async function setRoot(id: string, flags: ServerFlags & { root: string }): Promise<void> {
  const trustRoot = await readRootFile(flags.root);
  const client = connectFromEnvironment(flags);
  // Not repeated (PUT, but a rotation): a retry after a lost answer would be refused as stale.
  const res = await client.api({ idempotent: false }).v1.admin.products[':id']['trust-root'].$put({
    param: { id: encodeURIComponent(id) },
    json: { trustRoot },
  });
  const updated = await readJson(res, (s) => s.ProductSchema);
  if (flags.json === true) printJson({ ok: true, product: updated });
  else process.stdout.write(`product ${updated.id}: trust root is now v${updated.trustRootVersion}\n`);
}

/** `abota product set ID [--require-approval | --no-require-approval] [--description TEXT]` */
export async function set(
  id: string,
  flags: ServerFlags & { requireApproval?: boolean; description?: string },
): Promise<void> {
  await checkedId('product', id, (s) => s.ProductIdParam, 'a product id (1..63 of a-z 0-9 . _ -)');
  if (flags.requireApproval === undefined && flags.description === undefined)
    throw new AdminApiError(
      'ERR_USAGE',
      'nothing to change: give --require-approval, --no-require-approval or --description <text>',
    );
  const api = connectFromEnvironment(flags).api();
  const res = await api.v1.admin.products[':id'].$patch({
    param: { id },
    json: {
      ...(flags.requireApproval === undefined ? {} : { requireApproval: flags.requireApproval }),
      ...(flags.description === undefined ? {} : { description: flags.description }),
    },
  });
  const p = await readJson(res, (s) => s.ProductSchema);
  if (flags.json === true) return printJson({ ok: true, product: p });
  process.stdout.write(
    `product ${p.id}: rollouts ${p.requireApproval ? 'need approval by a second operator or admin key' : 'start without approval'}\n`,
  );
}

/** `abota product list` */
export async function list(flags: ServerFlags): Promise<void> {
  const api = connectFromEnvironment(flags).api();
  const { items } = await readJson(await api.v1.admin.products.$get(), ProductList);
  if (flags.json === true) return printJson({ ok: true, items });
  if (items.length === 0) return void process.stdout.write('no products\n');
  process.stdout.write(
    formatTable(
      ['ID', 'TRUST ROOT', 'UPDATED', 'DESCRIPTION'],
      items.map((p) => [p.id, `v${p.trustRootVersion}`, p.updatedAt, p.description || '-']),
    ),
  );
}

/** `abota product show ID` */
export async function show(id: string, flags: ServerFlags): Promise<void> {
  await checkedId('product', id, (s) => s.ProductIdParam, 'a product id (1..63 of a-z 0-9 . _ -)');
  const api = connectFromEnvironment(flags).api();
  const p = await readJson(
    await api.v1.admin.products[':id'].$get({ param: { id } }),
    (s) => s.ProductSchema,
  );
  if (flags.json === true) return printJson({ ok: true, product: p });
  process.stdout.write(
    `product ${p.id}\n  trust root  v${p.trustRootVersion}\n  approval    ${p.requireApproval ? 'required (four-eyes)' : 'not required'}\n  created     ${p.createdAt}\n  updated     ${p.updatedAt}\n  description ${p.description || '-'}\n`,
  );
}
