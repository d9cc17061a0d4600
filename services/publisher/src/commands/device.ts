// `abota device list|show|tags|decommission`: the fleet as the update server sees it.
import type { DeviceSchema } from '@abota/api';
import { printJson } from '../output.js';
import { type ApiSchemas, connectFromEnvironment, readJson, type ServerFlags } from '../server-api/client.js';
import { checkedId, formatTable, parsePositiveInt, usage } from './server-flags.js';

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

interface DeviceListFlags extends ServerFlags {
  product?: string;
  hardware?: string;
  tag?: string;
  version?: string;
  limit?: string;
  cursor?: string;
}

type Device = ReturnType<typeof DeviceSchema.parse>;

function describeDevice(d: Device): string[] {
  return [
    `device ${d.id}${d.decommissionedAt === null ? '' : ` (decommissioned ${d.decommissionedAt})`}`,
    `  product      ${d.product}`,
    `  hardware     ${d.hardware}`,
    `  version      ${d.currentVersion ?? '-'}`,
    `  booted slot  ${d.bootedSlot ?? '-'}`,
    `  install      ${d.installState ?? '-'}`,
    `  last seen    ${d.lastSeenAt ?? 'never'}`,
    `  registered   ${d.registeredAt}`,
    `  tags         ${d.tags.length === 0 ? '-' : d.tags.join(', ')}`,
    ...Object.entries(d.attributes).map(([k, v]) => `  attribute    ${k}=${v}`),
  ];
}

/** `abota device list` */
export async function list(flags: DeviceListFlags): Promise<void> {
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
  if (page.nextCursor !== null) process.stderr.write(`more: abota device list --cursor ${page.nextCursor}\n`);
}

/** `abota device show ID` */
export async function show(id: string, flags: ServerFlags): Promise<void> {
  await checkedId('device', id, (s) => s.IdParam, 'a device id (UUID, from `abota device list`)');
  const api = connectFromEnvironment(flags).api();
  const d = await readJson(
    await api.v1.admin.devices[':id'].$get({ param: { id } }),
    (s) => s.DeviceDetailSchema,
  );
  if (flags.json === true) return printJson({ ok: true, device: d });
  process.stdout.write(`${describeDevice(d).join('\n')}\n`);
  if (d.events.length === 0) return void process.stdout.write('no events\n');
  process.stdout.write(
    `\n${formatTable(
      ['AT', 'VERSION', 'STATE', 'PROGRESS', 'ROLLOUT', 'ERROR'],
      d.events.map((e) => [
        e.at,
        e.version,
        e.state,
        e.progress === null ? '-' : `${e.progress}%`,
        e.rolloutId ?? '-',
        [e.errorCode, e.message].filter((x) => x !== null && x !== '').join(': ') || '-',
      ]),
    )}`,
  );
}

/** `abota device tags ID TAG...` */
export async function tags(
  id: string,
  tags: string[],
  flags: ServerFlags & { clear?: boolean },
): Promise<void> {
  await checkedId('device', id, (s) => s.IdParam, 'a device id (UUID, from `abota device list`)');
  if (tags.length === 0 && flags.clear !== true)
    throw usage('abota device tags: give the new tags, or --clear to remove them all');
  if (tags.length > 0 && flags.clear === true)
    throw usage('abota device tags: give tags or --clear, not both');
  const api = connectFromEnvironment(flags).api();
  const res = await api.v1.admin.devices[':id'].tags.$put({ param: { id }, json: { tags } });
  const d = await readJson(res, (s) => s.DeviceSchema);
  if (flags.json === true) return printJson({ ok: true, device: d });
  process.stdout.write(`device ${d.id}: tags ${d.tags.length === 0 ? '(none)' : d.tags.join(', ')}\n`);
}

/** `abota device decommission ID` */
export async function decommission(id: string, flags: ServerFlags): Promise<void> {
  await checkedId('device', id, (s) => s.IdParam, 'a device id (UUID, from `abota device list`)');
  // Not repeated after a lost answer: a second try would say "no active device".
  const api = connectFromEnvironment(flags).api({ idempotent: false });
  const res = await api.v1.admin.devices[':id'].decommission.$post({ param: { id } });
  const d = await readJson(res, (s) => s.DeviceSchema);
  if (flags.json === true) return printJson({ ok: true, device: d });
  process.stdout.write(`device ${d.id} decommissioned at ${d.decommissionedAt ?? '?'}\n`);
}
