// Credentials an admin hands out, beyond `token create`: `token list|revoke` (provisioning tokens)
// and `apikey create|list|revoke` (admin API keys, one role each). Secrets are printed once, at
// creation, alone on stdout so a script can capture them; the server stores only their hashes.
import type { ApiKeyRole } from '@abota/update-server/api';
import type { Command } from 'commander';
import { printJson } from '../output.js';
import { type ApiSchemas, connectFromEnvironment, readJson, type ServerFlags } from '../server-api/client.js';
import { AdminApiError } from '../server-api/error.js';
import { checkedId, commandGroup, formatTable, usage, withServerOptions } from './server-flags.js';

const TokenList = (s: ApiSchemas) => s.listOf(s.ProvisioningTokenSchema);
const KeyList = (s: ApiSchemas) => s.listOf(s.ApiKeySchema);

/** The server's roles (API_KEY_ROLES), here for --help without loading the schemas. */
const ROLES = ['admin', 'publisher', 'operator', 'viewer'] as const satisfies readonly ApiKeyRole[];
/** Fails the typecheck when the server has a role ROLES does not list. */
const everyRoleListed: [Exclude<ApiKeyRole, (typeof ROLES)[number]>] extends [never] ? true : never = true;
void everyRoleListed;

function parseRole(text: string): ApiKeyRole {
  const role = ROLES.find((r) => r === text);
  if (role === undefined) throw usage(`--role ${JSON.stringify(text)}: expected one of ${ROLES.join(', ')}`);
  return role;
}

export function registerCredentialCommands(program: Command): void {
  const token = commandGroup(program, 'token', 'provisioning tokens that devices register with');

  withServerOptions(
    token.command('list').description('list provisioning tokens (never the tokens themselves)'),
  ).action(async (flags: ServerFlags) => {
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
  });

  withServerOptions(
    token
      .command('revoke')
      .description('revoke a provisioning token: no device registers with it any more')
      .argument('<id>', 'token id (from `abota token list`)'),
  ).action(async (id: string, flags: ServerFlags) => {
    await checkedId('token', id, (s) => s.IdParam, 'a token id (UUID, from `abota token list`)');
    const api = connectFromEnvironment(flags).api();
    const res = await api.v1.admin['provisioning-tokens'][':id'].revoke.$post({ param: { id } });
    const t = await readJson(res, (s) => s.ProvisioningTokenSchema);
    if (flags.json === true) return printJson({ ok: true, token: t });
    process.stdout.write(`provisioning token ${t.id} (${t.product}) revoked at ${t.revokedAt ?? '?'}\n`);
  });

  const apikey = commandGroup(program, 'apikey', 'admin API keys, each with one role');

  withServerOptions(
    apikey
      .command('create')
      .description(
        `create an API key with one role (${ROLES.join(', ')}); it is printed once and cannot be shown again`,
      )
      .requiredOption('--name <name>', 'who or what uses it (e.g. ci-publisher)')
      .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`),
  ).action(async (flags: ServerFlags & { name: string; role: string }) => {
    const role = parseRole(flags.role);
    // Never repeated: two keys would exist and only one be shown.
    const api = connectFromEnvironment(flags).api({ idempotent: false });
    const res = await api.v1.admin['api-keys'].$post({ json: { name: flags.name, role } });
    const created = await readJson(res, (s) => s.ApiKeySchema);
    if (created.key === undefined)
      throw new AdminApiError('ERR_SERVER_RESPONSE_INVALID', 'POST /v1/admin/api-keys: no key in the answer');
    if (flags.json === true) return printJson({ ok: true, ...created });
    process.stderr.write(
      `API key ${created.id} "${created.name}" with role ${created.role}; it is not shown again:\n`,
    );
    process.stdout.write(`${created.key}\n`);
  });

  withServerOptions(apikey.command('list').description('list API keys (never the keys themselves)')).action(
    async (flags: ServerFlags) => {
      const api = connectFromEnvironment(flags).api();
      const { items } = await readJson(await api.v1.admin['api-keys'].$get(), KeyList);
      if (flags.json === true) return printJson({ ok: true, items });
      process.stdout.write(
        formatTable(
          ['ID', 'NAME', 'ROLE', 'CREATED', 'REVOKED'],
          items.map((k) => [k.id, k.name, k.role, k.createdAt, k.revokedAt ?? '-']),
        ),
      );
    },
  );

  withServerOptions(
    apikey
      .command('revoke')
      .description('revoke an API key: the server refuses it from now on')
      .argument('<id>', 'key id (from `abota apikey list`)'),
  ).action(async (id: string, flags: ServerFlags) => {
    await checkedId('API key', id, (s) => s.IdParam, 'a key id (UUID, from `abota apikey list`)');
    const api = connectFromEnvironment(flags).api();
    const res = await api.v1.admin['api-keys'][':id'].revoke.$post({ param: { id } });
    const k = await readJson(res, (s) => s.ApiKeySchema);
    if (flags.json === true) return printJson({ ok: true, apiKey: k });
    process.stdout.write(`API key ${k.id} "${k.name}" revoked at ${k.revokedAt ?? '?'}\n`);
  });
}
