// The update-server commands a release engineer needs besides `release push`: `product create`
// and `product set-root` (trust root rotation), `token create` (provisioning tokens for devices),
// `device list`. Each maps flags to one typed admin call (../server-api) and prints the answer
// for a person or, with --json, as one JSON document. Server errors print as `abota: CODE: message`.
import { readFile, stat } from 'node:fs/promises';
import type { DeviceSchema } from '@abota/update-server/api';
import type { Command } from 'commander';
import { type ApiSchemas, connectFromEnvironment, readJson, type ServerFlags } from '../server-api/client.js';
import { AdminApiError } from '../server-api/error.js';
import { printJson } from '../output.js';
import { parseDuration } from './keys.js';
import { registerPushCommand } from './push.js';
import { formatTable, parsePositiveInt, withServerOptions } from './server-flags.js';

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

const DevicePage = (s: ApiSchemas) => s.pageOf(s.DeviceSchema);

function deviceRow(d: ReturnType<typeof DeviceSchema.parse>): string[] {
  return [
    d.id,
    d.product,
    d.hardware,
    d.currentVersion ?? '-',
    d.bootedSlot ?? '-',
    d.installState ?? '-',
    d.lastSeenAt ?? '-',
    d.tags.length === 0 ? '-' : d.tags.join(','),
  ];
}

interface TokenFlags extends ServerFlags {
  product: string;
  expires: string;
  maxUses?: string;
  description?: string;
}

interface DeviceListFlags extends ServerFlags {
  product?: string;
  hardware?: string;
  tag?: string;
  version?: string;
  limit?: string;
  cursor?: string;
}

export function registerServerCommands(program: Command): void {
  // `release push` joins build/verify/inspect in the group registerReleaseCommands made.
  const release = program.commands.find((c) => c.name() === 'release');
  if (release === undefined) throw new Error('registerServerCommands must run after registerReleaseCommands');
  registerPushCommand(release);

  const product = program
    .command('product')
    .description('create products on an update server and rotate their trust roots');

  withServerOptions(
    product
      .command('create')
      .description(
        'create a product with its trust root (root.json of `abota keys init`); releases are verified against it',
      )
      .argument('<id>', 'product id, as in the manifests (e.g. eflow-vm)')
      .requiredOption('--root <root.json>', 'the trust root file')
      .option('--description <text>', 'free text shown in listings'),
  ).action(async (id: string, flags: ServerFlags & { root: string; description?: string }) => {
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
  });

  withServerOptions(
    product
      .command('set-root')
      .description(
        'rotate the trust root: upload root.json version N+1 (from `abota keys rotate`), signed by the current and the new root keys',
      )
      .argument('<id>', 'product id')
      .requiredOption('--root <root.json>', 'the new trust root file'),
  ).action(async (id: string, flags: ServerFlags & { root: string }) => {
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
  });

  const token = program.command('token').description('provisioning tokens that devices register with');
  withServerOptions(
    token
      .command('create')
      .description(
        'create a provisioning token for one product; it is printed once and cannot be shown again',
      )
      .requiredOption('--product <id>', 'product the registering devices belong to')
      .option('--expires <duration>', 'lifetime, e.g. 7d, 12h, 2w (1m..365d)', '7d')
      .option(
        '--max-uses <n>',
        'number of devices that may register with it (default: unlimited until expiry)',
      )
      .option('--description <text>', 'free text shown in listings'),
  ).action(async (flags: TokenFlags) => {
    const expiresInSeconds = Math.floor(parseDuration(flags.expires) / 1000);
    if (expiresInSeconds < 60 || expiresInSeconds > 365 * 86400) {
      throw new AdminApiError('ERR_USAGE', `--expires ${flags.expires}: the server accepts 1m..365d`);
    }
    const maxUses = parsePositiveInt('--max-uses', flags.maxUses, 10_000_000);
    const client = connectFromEnvironment(flags);
    // Never repeated: two tokens would exist and only one be shown.
    const res = await client.api().v1.admin['provisioning-tokens'].$post({
      json: {
        product: flags.product,
        expiresInSeconds,
        ...(maxUses === undefined ? {} : { maxUses }),
        ...(flags.description === undefined ? {} : { description: flags.description }),
      },
    });
    const created = await readJson(res, (s) => s.ProvisioningTokenSchema);
    if (created.token === undefined) {
      throw new AdminApiError(
        'ERR_SERVER_RESPONSE_INVALID',
        'POST /v1/admin/provisioning-tokens: no token in the answer',
      );
    }
    if (flags.json === true) {
      printJson({ ok: true, ...created });
      return;
    }
    // The token alone on stdout (scripts capture it); the rest on stderr for the person.
    process.stderr.write(
      `provisioning token ${created.id} for ${created.product}, expires ${created.expiresAt}, ${created.maxUses === null ? 'unlimited uses' : `${created.maxUses} use(s)`}; it is not shown again:\n`,
    );
    process.stdout.write(`${created.token}\n`);
  });

  const device = program.command('device').description('the fleet as the update server sees it');
  withServerOptions(
    device
      .command('list')
      .description('list registered devices (one page; --cursor continues)')
      .option('--product <id>', 'only this product')
      .option('--hardware <id>', 'only this hardware id')
      .option('--tag <tag>', 'only devices with this tag')
      .option('--version <semver>', 'only devices running this version')
      .option('--limit <n>', 'page size (1..1000)', '100')
      .option('--cursor <cursor>', 'continue after a previous page'),
  ).action(async (flags: DeviceListFlags) => {
    const limit = parsePositiveInt('--limit', flags.limit, 1000);
    const client = connectFromEnvironment(flags);
    const query = {
      ...(flags.product === undefined ? {} : { product: flags.product }),
      ...(flags.hardware === undefined ? {} : { hardware: flags.hardware }),
      ...(flags.tag === undefined ? {} : { tag: flags.tag }),
      ...(flags.version === undefined ? {} : { version: flags.version }),
      ...(limit === undefined ? {} : { limit: String(limit) }),
      ...(flags.cursor === undefined ? {} : { cursor: flags.cursor }),
    };
    const page = await readJson(await client.api().v1.admin.devices.$get({ query }), DevicePage);
    if (flags.json === true) {
      printJson({ ok: true, ...page });
      return;
    }
    if (page.items.length === 0) {
      process.stdout.write('no devices\n');
      return;
    }
    process.stdout.write(
      formatTable(
        ['ID', 'PRODUCT', 'HARDWARE', 'VERSION', 'SLOT', 'STATE', 'LAST SEEN', 'TAGS'],
        page.items.map(deviceRow),
      ),
    );
    if (page.nextCursor !== null)
      process.stderr.write(`more: abota device list --cursor ${page.nextCursor}\n`);
  });
}
