// doctor: the slot layout against the machine. Each image of each slot must exist (block
// devices always; a slot *file* may be created by the first install), be writable, be used by
// no other slot area, and be large enough for its data and dm-verity hash area. Sizes assume the
// publisher's verity defaults (sha256, 4 KiB blocks, superblock), as `abota release build` makes.
import { constants, type Stats } from 'node:fs';
import { access, open, realpath, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { treeGeometry } from '@abota/verity';
import type { SlotName } from '../bootctl/bootcontrol.js';
import type { AgentConfig, ImageTarget } from '../config.js';
import { deviceInfo } from '../install/slot-io.js';
import { type DoctorFinding, problem } from './finding.js';

const BLOCK_BYTES = 4096;

interface Area {
  subject: string;
  path: string;
  /** Where this area starts on `path`. */
  offsetBytes: number;
}

/** The hash file `veritysetup format` (and the publisher) writes for `dataBytes` of data. */
export function hashAreaBytes(dataBytes: number): number {
  return treeGeometry({
    hashType: 1,
    algorithm: 'sha256',
    dataBlockSize: BLOCK_BYTES,
    hashBlockSize: BLOCK_BYTES,
    dataBlocks: Math.ceil(dataBytes / BLOCK_BYTES),
    hashOffset: 0,
    superblock: true,
  }).hashFileSizeBytes;
}

async function statOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch {
    return undefined;
  }
}

async function sizeOf(path: string, st: Stats): Promise<number> {
  if (!st.isBlockDevice()) return st.size;
  const fh = await open(path, 'r');
  try {
    return (await deviceInfo(fh)).sizeBytes;
  } finally {
    await fh.close();
  }
}

const fmt = (n: number): string => `${n} bytes (${(n / 2 ** 20).toFixed(1)} MiB)`;

/** One path of a slot: it exists (or may be created), is a device or file, and is writable. */
async function checkPath(
  subject: string,
  path: string,
  mustExist: boolean,
): Promise<{ findings: DoctorFinding[]; st?: Stats }> {
  const st = await statOrUndefined(path);
  if (st === undefined) {
    const device = path.startsWith('/dev/');
    if (!mustExist && !device && (await statOrUndefined(dirname(path)))?.isDirectory())
      return { findings: [] }; // a slot file the first install creates
    const fix = device
      ? `create the partition (e.g. with its GPT label) or correct ${subject} in the config`
      : mustExist
        ? `this is the booted slot: it must hold the running system (a simulated device: copy the factory image to ${path}), or correct ${subject}`
        : `create ${dirname(path)} (a slot file is created by the first install), or correct ${subject}`;
    return { findings: [problem('ERR_DOCTOR_SLOT_MISSING', subject, `${path} does not exist`, fix)] };
  }
  if (!st.isBlockDevice() && !st.isFile()) {
    return {
      findings: [
        problem(
          'ERR_DOCTOR_SLOT_TYPE',
          subject,
          `${path} is neither a block device nor a regular file`,
          `point ${subject} at the slot's partition (block device) or an image file`,
        ),
      ],
    };
  }
  try {
    await access(path, constants.R_OK | constants.W_OK);
  } catch (e) {
    return {
      st,
      findings: [
        problem(
          'ERR_DOCTOR_NOT_WRITABLE',
          subject,
          `${path} cannot be read and written by this user: ${(e as Error).message}`,
          'run the agent as root (the systemd unit does), or give its user write access to the slot devices',
        ),
      ],
    };
  }
  return { findings: [], st };
}

/** Data and hash area of one image: the hash area must fit and must not overlap the data. */
async function checkImage(subject: string, t: ImageTarget, mustExist: boolean): Promise<DoctorFinding[]> {
  const data = await checkPath(`${subject}.path`, t.path, mustExist);
  const findings = [...data.findings];
  const hashOffset = t.hashOffsetBytes ?? 0;
  if (hashOffset % BLOCK_BYTES !== 0) {
    findings.push(
      problem(
        'ERR_DOCTOR_HASH_AREA',
        `${subject}.hashOffsetBytes`,
        `${hashOffset} is not a multiple of ${BLOCK_BYTES} bytes`,
        `round ${subject}.hashOffsetBytes to a whole 4 KiB block`,
      ),
    );
  }
  if (t.hashPath === undefined) {
    // Hash area after the data on the same device: the data area is [0, hashOffsetBytes).
    if (hashOffset === 0) {
      findings.push(
        problem(
          'ERR_DOCTOR_HASH_AREA',
          subject,
          `the hash area starts at byte 0 of ${t.path}, on top of the data`,
          `give ${subject}.hashOffsetBytes (where the data area ends) or a separate ${subject}.hashPath`,
        ),
      );
    } else if (data.st?.isBlockDevice()) {
      const size = await sizeOf(t.path, data.st);
      const needed = hashOffset + hashAreaBytes(hashOffset);
      if (size < needed) {
        findings.push(
          problem(
            'ERR_DOCTOR_SLOT_TOO_SMALL',
            subject,
            `${t.path} is ${fmt(size)}; a data area of ${fmt(hashOffset)} and its hash area (${fmt(hashAreaBytes(hashOffset))}, sha256, 4 KiB blocks) need ${fmt(needed)}`,
            `make the partition at least ${needed} bytes, or lower ${subject}.hashOffsetBytes to the largest image you will ship`,
          ),
        );
      }
    }
    return findings;
  }
  // A simulated factory slot may have no hash file; a hash partition (/dev) must exist.
  const hash = await checkPath(`${subject}.hashPath`, t.hashPath, false);
  findings.push(...hash.findings);
  if (data.st?.isBlockDevice() && hash.st?.isBlockDevice()) {
    const dataBytes = await sizeOf(t.path, data.st);
    const needed = hashOffset + hashAreaBytes(dataBytes);
    const size = await sizeOf(t.hashPath, hash.st);
    if (size < needed) {
      findings.push(
        problem(
          'ERR_DOCTOR_SLOT_TOO_SMALL',
          `${subject}.hashPath`,
          `${t.hashPath} is ${fmt(size)}; the hash area of ${t.path} (${fmt(dataBytes)} of data) needs ${fmt(needed)} from byte ${hashOffset}`,
          `make the hash partition at least ${needed} bytes`,
        ),
      );
    }
  }
  return findings;
}

async function canonical(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch {
    return path;
  }
}

function areasOf(config: AgentConfig): Area[] {
  const areas: Area[] = [];
  for (const slot of ['A', 'B'] as const) {
    for (const name of ['rootfs', 'boot'] as const) {
      const t = config.slots[slot][name];
      if (t === undefined) continue;
      const subject = `slots.${slot}.${name}`;
      areas.push({ subject: `${subject}.path`, path: t.path, offsetBytes: 0 });
      if (t.hashPath !== undefined)
        areas.push({ subject: `${subject}.hashPath`, path: t.hashPath, offsetBytes: t.hashOffsetBytes ?? 0 });
    }
  }
  return areas;
}

/** Two areas that start at the same byte of the same device would overwrite each other. */
async function sharedAreas(config: AgentConfig): Promise<DoctorFinding[]> {
  const seen = new Map<string, string>();
  const findings: DoctorFinding[] = [];
  for (const a of areasOf(config)) {
    const key = `${await canonical(a.path)}@${a.offsetBytes}`;
    const other = seen.get(key);
    if (other !== undefined) {
      findings.push(
        problem(
          'ERR_DOCTOR_SLOT_SHARED',
          a.subject,
          `${a.path} (from byte ${a.offsetBytes}) is also ${other}`,
          'give every slot image and hash area its own partition, file or offset',
        ),
      );
    } else seen.set(key, a.subject);
  }
  return findings;
}

export async function checkSlots(
  config: AgentConfig,
  bootedSlot: SlotName | undefined,
): Promise<DoctorFinding[]> {
  const findings = await sharedAreas(config);
  for (const slot of ['A', 'B'] as const) {
    // The running slot holds the running system: its images exist whatever they are.
    const mustExist = slot === bootedSlot;
    findings.push(...(await checkImage(`slots.${slot}.rootfs`, config.slots[slot].rootfs, mustExist)));
    const boot = config.slots[slot].boot;
    if (boot !== undefined) findings.push(...(await checkImage(`slots.${slot}.boot`, boot, mustExist)));
  }
  return findings;
}
