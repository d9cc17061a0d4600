// `abota token create|list|revoke`: provisioning tokens that devices register with. The token
// itself is printed once, at creation, alone on stdout so a script can capture it; the server
// stores only its hash.
import { printJson } from '../output.js';
import { type ApiSchemas, connectFromEnvironment, readJson, type ServerFlags } from '../server-api/client.js';
import { AdminApiError } from '../server-api/error.js';
import { parseDuration } from './keys.js';
import { checkedId, formatTable, parsePositiveInt } from './server-flags.js';

const TokenList = (s: ApiSchemas) => s.listOf(s.ProvisioningTokenSchema);

interface TokenFlags extends ServerFlags {
  product: string;
  expires: string;
  maxUses?: string;
  description?: string;
}

/** `abota token create --product ID --expires DURATION` */
export async function create(flags: TokenFlags): Promise<void> {
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
}

/** `abota token list` */
export async function list(flags: ServerFlags): Promise<void> {
  const api = connectFromEnvironment(flags).api();
  const { items } = await readJson(await api.v1.admin['provisioning-tokens'].$get(), TokenList);
  if (flags.json === true) return printJson({ ok: true, items });
  if (items.length === 0) return void process.stdout.write('no provisioning tokens\n');
  process.stdout.write(
    formatTable(
      ['ID', 'PRODUCT', 'USES', 'EXPIRES', 'REVOKED', 'DESCRIPTION'],
      items.map((t) => [
        t.id,
        t.product,
        `${t.uses}/${t.maxUses ?? 'unlimited'}`,
        t.expiresAt,
        t.revokedAt ?? '-',
        t.description || '-',
      ]),
    ),
  );
}

/** `abota token revoke ID` */
export async function revoke(id: string, flags: ServerFlags): Promise<void> {
  await checkedId('token', id, (s) => s.IdParam, 'a token id (UUID, from `abota token list`)');
  const api = connectFromEnvironment(flags).api();
  const res = await api.v1.admin['provisioning-tokens'][':id'].revoke.$post({ param: { id } });
  const t = await readJson(res, (s) => s.ProvisioningTokenSchema);
  if (flags.json === true) return printJson({ ok: true, token: t });
  process.stdout.write(`provisioning token ${t.id} (${t.product}) revoked at ${t.revokedAt ?? '?'}\n`);
}
