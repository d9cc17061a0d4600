// The fleet beyond `device list`: `device show` (a device with its latest events), `device tags`
// (replace the tags rollout selectors match on) and `device decommission` (its tokens are refused
// from then on). Each is one typed admin call (../server-api).
import type { DeviceSchema } from '@abota/update-server/api';
import type { Command } from 'commander';
import { printJson } from '../output.js';
import { connectFromEnvironment, readJson, type ServerFlags } from '../server-api/client.js';
import { checkedId, commandGroup, formatTable, usage, withServerOptions } from './server-flags.js';

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

export function registerFleetCommands(program: Command): void {
  const device = commandGroup(program, 'device', 'the fleet as the update server sees it');

  withServerOptions(
    device
      .command('show')
      .description('show a device and its latest events (installs, commits, failures, newest first)')
      .argument('<id>', 'device id (from `abota device list`)'),
  ).action(async (id: string, flags: ServerFlags) => {
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
  });

  withServerOptions(
    device
      .command('tags')
      .description("replace a device's tags (rollout selectors match on them); --clear removes all")
      .argument('<id>', 'device id')
      .argument('[tags...]', 'the new tags, e.g. ring=canary site=berlin')
      .option('--clear', 'remove every tag'),
  ).action(async (id: string, tags: string[], flags: ServerFlags & { clear?: boolean }) => {
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
  });

  withServerOptions(
    device
      .command('decommission')
      .description('decommission a device: the server refuses its tokens from now on (not undoable)')
      .argument('<id>', 'device id'),
  ).action(async (id: string, flags: ServerFlags) => {
    await checkedId('device', id, (s) => s.IdParam, 'a device id (UUID, from `abota device list`)');
    // Not repeated after a lost answer: a second try would say "no active device".
    const api = connectFromEnvironment(flags).api({ idempotent: false });
    const res = await api.v1.admin.devices[':id'].decommission.$post({ param: { id } });
    const d = await readJson(res, (s) => s.DeviceSchema);
    if (flags.json === true) return printJson({ ok: true, device: d });
    process.stdout.write(`device ${d.id} decommissioned at ${d.decommissionedAt ?? '?'}\n`);
  });
}
