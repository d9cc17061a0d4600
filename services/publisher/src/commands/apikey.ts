// `abota apikey create|list|revoke`: admin API keys, one role each. The key is printed once, at
// creation, alone on stdout so a script can capture it; the server stores only its hash.
import type { ApiKeyRole } from '@abota/api';
import { printJson } from '../output.js';
import { type ApiSchemas, connectFromEnvironment, readJson, type ServerFlags } from '../server-api/client.js';
import { AdminApiError } from '../server-api/error.js';
import { ROLES } from '../cli/flags.js';
import { checkedId, formatTable, usage } from './server-flags.js';

const KeyList = (s: ApiSchemas) => s.listOf(s.ApiKeySchema);

function parseRole(text: string): ApiKeyRole {
  const role = ROLES.find((r) => r === text);
  if (role === undefined) throw usage(`--role ${JSON.stringify(text)}: expected one of ${ROLES.join(', ')}`);
  return role;
}

/** `abota apikey create --name NAME --role ROLE` */
export async function create(flags: ServerFlags & { name: string; role: string }): Promise<void> {
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
}

/** `abota apikey list` */
export async function list(flags: ServerFlags): Promise<void> {
  const api = connectFromEnvironment(flags).api();
  const { items } = await readJson(await api.v1.admin['api-keys'].$get(), KeyList);
  if (flags.json === true) return printJson({ ok: true, items });
  process.stdout.write(
    formatTable(
      ['ID', 'NAME', 'ROLE', 'CREATED', 'REVOKED'],
      items.map((k) => [k.id, k.name, k.role, k.createdAt, k.revokedAt ?? '-']),
    ),
  );
}

/** `abota apikey revoke ID` */
export async function revoke(id: string, flags: ServerFlags): Promise<void> {
  await checkedId('API key', id, (s) => s.IdParam, 'a key id (UUID, from `abota apikey list`)');
  const api = connectFromEnvironment(flags).api();
  const res = await api.v1.admin['api-keys'][':id'].revoke.$post({ param: { id } });
  const k = await readJson(res, (s) => s.ApiKeySchema);
  if (flags.json === true) return printJson({ ok: true, apiKey: k });
  process.stdout.write(`API key ${k.id} "${k.name}" revoked at ${k.revokedAt ?? '?'}\n`);
}
