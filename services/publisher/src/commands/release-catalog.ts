// `abota release list|show|yank|deltas|remove-delta`: the releases an update server holds and
// their deltas (the other `release` commands work on local release directories). Each action is
// one typed admin call (../server-api) and prints a table for a person or, with --json, one
// JSON document.
import { printJson } from '../output.js';
import { type ApiSchemas, connectFromEnvironment, readJson, type ServerFlags } from '../server-api/client.js';
import { checkedId, formatTable, parsePositiveInt } from './server-flags.js';

interface ReleaseListFlags extends ServerFlags {
  product?: string;
  limit?: string;
  cursor?: string;
}

const ReleasePage = (s: ApiSchemas) => s.pageOf(s.ReleaseSchema);

/** `abota release list` */
export async function list(flags: ReleaseListFlags): Promise<void> {
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
}

/** `abota release show ID` */
export async function show(id: string, flags: ServerFlags): Promise<void> {
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
}

/** `abota release yank ID --reason TEXT` */
export async function yank(id: string, flags: ServerFlags & { reason: string }): Promise<void> {
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
}

/** `abota release deltas ID` */
export async function deltas(id: string, flags: ServerFlags): Promise<void> {
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
}

/** `abota release remove-delta RELEASE DELTA` */
export async function removeDelta(releaseId: string, deltaId: string, flags: ServerFlags): Promise<void> {
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
}
