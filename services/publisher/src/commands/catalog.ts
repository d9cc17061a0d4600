// What the update server holds for release engineers, beyond push and product create/set-root:
// `product list|show`, `release list|show|yank`, and a release's deltas (`release deltas`,
// `release remove-delta`). Each command is one typed admin call (../server-api) and prints a
// table for a person or, with --json, one JSON document.
import type { Command } from 'commander';
import { printJson } from '../output.js';
import { type ApiSchemas, connectFromEnvironment, readJson, type ServerFlags } from '../server-api/client.js';
import { checkedId, commandGroup, formatTable, parsePositiveInt, withServerOptions } from './server-flags.js';

interface ReleaseListFlags extends ServerFlags {
  product?: string;
  limit?: string;
  cursor?: string;
}

const ReleasePage = (s: ApiSchemas) => s.pageOf(s.ReleaseSchema);
const ProductList = (s: ApiSchemas) => s.listOf(s.ProductSchema);

export function registerCatalogCommands(program: Command): void {
  const product = commandGroup(program, 'product', 'products on an update server and their trust roots');

  withServerOptions(product.command('list').description('list the products on the server')).action(
    async (flags: ServerFlags) => {
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
    },
  );

  withServerOptions(
    product
      .command('show')
      .description('show a product and its current trust root (--json prints root.json too)')
      .argument('<id>', 'product id'),
  ).action(async (id: string, flags: ServerFlags) => {
    await checkedId('product', id, (s) => s.ProductIdParam, 'a product id (1..63 of a-z 0-9 . _ -)');
    const api = connectFromEnvironment(flags).api();
    const p = await readJson(
      await api.v1.admin.products[':id'].$get({ param: { id } }),
      (s) => s.ProductSchema,
    );
    if (flags.json === true) return printJson({ ok: true, product: p });
    process.stdout.write(
      `product ${p.id}\n  trust root  v${p.trustRootVersion}\n  created     ${p.createdAt}\n  updated     ${p.updatedAt}\n  description ${p.description || '-'}\n`,
    );
  });

  const release = commandGroup(program, 'release', 'signed releases');

  withServerOptions(
    release
      .command('list')
      .description('list the releases on the server (one page; --cursor continues)')
      .option('--product <id>', 'only this product')
      .option('--limit <n>', 'page size (1..1000)', '100')
      .option('--cursor <cursor>', 'continue after a previous page'),
  ).action(async (flags: ReleaseListFlags) => {
    const limit = parsePositiveInt('--limit', flags.limit, 1000);
    const api = connectFromEnvironment(flags).api();
    const query = {
      ...(flags.product === undefined ? {} : { product: flags.product }),
      ...(limit === undefined ? {} : { limit: String(limit) }),
      ...(flags.cursor === undefined ? {} : { cursor: flags.cursor }),
    };
    const page = await readJson(await api.v1.admin.releases.$get({ query }), ReleasePage);
    if (flags.json === true) return printJson({ ok: true, ...page });
    if (page.items.length === 0) return void process.stdout.write('no releases\n');
    process.stdout.write(
      formatTable(
        ['ID', 'PRODUCT', 'VERSION', 'SECURITY', 'EXPIRES', 'YANKED'],
        page.items.map((r) => [
          r.id,
          r.product,
          r.version,
          String(r.securityVersion),
          r.expires,
          r.yanked ? `yes: ${r.yankedReason ?? ''}` : '-',
        ]),
      ),
    );
    if (page.nextCursor !== null)
      process.stderr.write(`more: abota release list --cursor ${page.nextCursor}\n`);
  });

  withServerOptions(
    release
      .command('show')
      .description('show a release: versions, compatibility, its blobs (--json adds the manifest)')
      .argument('<id>', 'release id (from `abota release list`)'),
  ).action(async (id: string, flags: ServerFlags) => {
    await checkedId('release', id, (s) => s.IdParam, 'a release id (UUID, from `abota release list`)');
    const api = connectFromEnvironment(flags).api();
    const r = await readJson(
      await api.v1.admin.releases[':id'].$get({ param: { id } }),
      (s) => s.ReleaseSchema,
    );
    if (flags.json === true) return printJson({ ok: true, release: r });
    const lines = [
      `release ${r.id}`,
      `  product          ${r.product}`,
      `  version          ${r.version}`,
      `  security version ${r.securityVersion}`,
      `  compatible       ${r.compatible.join(', ')}`,
      `  expires          ${r.expires}`,
      `  created          ${r.createdAt}`,
      `  yanked           ${r.yanked ? `yes: ${r.yankedReason ?? ''}` : 'no'}`,
      ...(r.blobs ?? []).map((b) => `  blob             ${b.role} ${b.digest}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  });

  withServerOptions(
    release
      .command('yank')
      .description('yank a release: never offered again (devices that installed it keep it)')
      .argument('<id>', 'release id')
      .requiredOption('--reason <text>', 'why (recorded in the audit log and shown in listings)'),
  ).action(async (id: string, flags: ServerFlags & { reason: string }) => {
    await checkedId('release', id, (s) => s.IdParam, 'a release id (UUID, from `abota release list`)');
    // A repeated yank is refused by the server (ERR_CONFLICT), so it is not retried blindly.
    const api = connectFromEnvironment(flags).api();
    const res = await api.v1.admin.releases[':id'].yank.$post({
      param: { id },
      json: { reason: flags.reason },
    });
    const r = await readJson(res, (s) => s.ReleaseSchema);
    if (flags.json === true) return printJson({ ok: true, release: r });
    process.stdout.write(
      `release ${r.product} ${r.version} (${r.id}) yanked: ${r.yankedReason ?? flags.reason}\n`,
    );
  });

  withServerOptions(
    release
      .command('deltas')
      .description('list the deltas registered for a release (which versions it updates from)')
      .argument('<id>', 'release id'),
  ).action(async (id: string, flags: ServerFlags) => {
    await checkedId('release', id, (s) => s.IdParam, 'a release id (UUID, from `abota release list`)');
    const api = connectFromEnvironment(flags).api();
    const { items } = await readJson(
      await api.v1.admin.releases[':id'].deltas.$get({ param: { id } }),
      (s) => s.DeltaListSchema,
    );
    if (flags.json === true) return printJson({ ok: true, items });
    if (items.length === 0) return void process.stdout.write('no deltas\n');
    process.stdout.write(
      formatTable(
        ['ID', 'IMAGE', 'FROM VERSION', 'SIZE', 'DIGEST'],
        items.map((d) => [d.id, d.image, d.sourceVersion, String(d.sizeBytes), d.digest]),
      ),
    );
  });

  withServerOptions(
    release
      .command('remove-delta')
      .description('stop offering a delta (its blob stays until `abota blob delete`)')
      .argument('<release-id>', 'release id')
      .argument('<delta-id>', 'delta id (from `abota release deltas`)'),
  ).action(async (releaseId: string, deltaId: string, flags: ServerFlags) => {
    await checkedId('release', releaseId, (s) => s.IdParam, 'a release id (UUID)');
    await checkedId('delta', deltaId, (s) => s.IdParam, 'a delta id (UUID, from `abota release deltas`)');
    const api = connectFromEnvironment(flags).api();
    const res = await api.v1.admin.releases[':id'].deltas[':deltaId'].$delete({
      param: { id: releaseId, deltaId },
    });
    const removed = await readJson(res, (s) => s.DeltaSchema);
    if (flags.json === true) return printJson({ ok: true, delta: removed });
    process.stdout.write(
      `delta ${removed.id} (${removed.image} from ${removed.sourceVersion}) of release ${releaseId} removed; its blob ${removed.digest} stays\n`,
    );
  });
}
