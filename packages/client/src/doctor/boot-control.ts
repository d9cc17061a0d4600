// doctor: the boot-control backend against the machine — the booted slot is known, the
// bootloader's state (grubenv, U-Boot env through fw_env.config, or the file backend's state)
// reads and names a slot to boot, the agent's variables fit, and the agent can write it.
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createBootControl } from '../boot-control-config.js';
import { type BootControl, otherSlot, type SlotName } from '../bootctl/bootcontrol.js';
import { missingEfivarTools } from '../bootctl/efivarfs.js';
import { editGrubEnv, readGrubEnvFile } from '../bootctl/grubenv.js';
import { encodeUBootEnv, readFwEnvConfigFile, readUBootEnv } from '../bootctl/ubootenv.js';
import { type UBootConvention, ubootTransition } from '../bootctl/uboot.js';
import type { AgentConfig, BootControlConfig } from '../config.js';
import { codeOf, type DoctorCode, type DoctorFinding, problem } from './finding.js';

const SUBJECT = 'bootControl';

/** How to create or repair each backend's state, for the fix line. */
function provisionHint(bc: BootControlConfig): string {
  switch (bc.backend) {
    case 'file':
      return `run "abota-agent init" to create ${bc.statePath}`;
    case 'grub':
      return `create it with "grub-editenv ${bc.envPath} create" and "grub-editenv ${bc.envPath} set ORDER='A B' A_OK=1 A_TRY=0 B_OK=0 B_TRY=0"`;
    case 'uefi':
      return bc.mode === 'firmware'
        ? `create one Boot#### entry per slot described "abota A" / "abota B" (efibootmgr -c -d DISK -p PART -L "abota A" -l '\\EFI\\BOOT\\BOOTX64.EFI') and put slot A's in BootOrder; efivarfs must be mounted read-write at ${bc.efivarsPath}`
        : `put the slots' UKIs in ${bc.espPath}/EFI/Linux (abota-a.efi blessed, set as default: bootctl set-default abota-a.efi); efivarfs must be mounted read-write at ${bc.efivarsPath}`;
    case 'uboot':
      return `check the offsets and sizes in ${bc.fwEnvConfigPath} against the board's U-Boot (CONFIG_ENV_OFFSET / CONFIG_ENV_SIZE), then provision the env (fw_setenv or mkenvimage)`;
  }
}

function fromError(e: unknown, bc: BootControlConfig): DoctorFinding {
  const code = (codeOf(e) ?? 'ERR_BOOTCTL_STATE_INVALID') as DoctorCode;
  return problem(code, SUBJECT, (e as Error).message, provisionHint(bc));
}

async function writable(paths: readonly string[], subject: string): Promise<DoctorFinding[]> {
  const findings: DoctorFinding[] = [];
  for (const path of paths) {
    try {
      await access(path, constants.W_OK);
    } catch (e) {
      findings.push(
        problem(
          'ERR_DOCTOR_NOT_WRITABLE',
          subject,
          `${path} is not writable: ${(e as Error).message}`,
          `run the agent as root, and list ${path} in the unit's ReadWritePaths (infra/systemd/abota-agent.service)`,
        ),
      );
    }
  }
  return findings;
}

/** The uefi backend's writes run lsattr and chattr: missing, an install fails as it arms the trial. */
async function efivarTools(): Promise<DoctorFinding[]> {
  const missing = await missingEfivarTools();
  if (missing.length === 0) return [];
  return [
    problem(
      'ERR_EFIVARS_IO',
      `${SUBJECT}.efivars`,
      `${missing.join(' and ')} not found on PATH (${process.env['PATH'] ?? ''}): the uefi backend reads and clears efivarfs's immutable flag with them before each variable write`,
      'install e2fsprogs (busybox has no lsattr/chattr), or add their directory to the PATH of the agent service',
    ),
  ];
}

/** The largest write the agent makes (arming a trial of the other slot) must fit the env. */
async function grubRoom(envPath: string): Promise<void> {
  const { block } = await readGrubEnvFile(envPath);
  editGrubEnv(
    block,
    [
      { op: 'set', name: 'ORDER', value: 'B A' },
      ...(['A', 'B'] as const).flatMap((s) => [
        { op: 'set' as const, name: `${s}_OK`, value: '0' },
        { op: 'set' as const, name: `${s}_TRY`, value: '0' },
      ]),
    ],
    envPath,
  );
}

async function ubootRoom(
  fwEnvConfigPath: string,
  convention: UBootConvention,
  booted: SlotName,
): Promise<string[]> {
  const env = await readFwEnvConfigFile(fwEnvConfigPath);
  const { vars } = await readUBootEnv(env);
  const after = new Map(vars);
  for (const [name, value] of ubootTransition(vars, convention, 'setTryOnce', otherSlot(booted)))
    after.set(name, value);
  const copy = env.copies[0];
  encodeUBootEnv(after, { sizeBytes: copy.sizeBytes, redundant: env.copies.length === 2 });
  return env.copies.map((c) => c.path);
}

/** The files the backend writes, after checking the agent's next write fits. */
async function stateFiles(config: AgentConfig, booted: SlotName): Promise<string[]> {
  const bc = config.bootControl;
  switch (bc.backend) {
    case 'file':
      // Written as temp + rename: the directory must be writable too.
      return [bc.statePath, dirname(bc.statePath)];
    case 'grub':
      await grubRoom(bc.envPath);
      return [bc.envPath, dirname(bc.envPath)];
    case 'uefi':
      // efivarfs files are written in place (chattr -i first); the stand-in directory and the
      // ESP's EFI/Linux by create + rename.
      return bc.mode === 'firmware' ? [bc.efivarsPath] : [bc.efivarsPath, `${bc.espPath}/EFI/Linux`];
    case 'uboot':
      return ubootRoom(bc.fwEnvConfigPath, bc.convention as UBootConvention, booted);
  }
}

export interface BootControlCheck {
  findings: DoctorFinding[];
  bootedSlot: SlotName | undefined;
}

export async function checkBootControl(config: AgentConfig): Promise<BootControlCheck> {
  const bc = config.bootControl;
  let control: BootControl;
  try {
    control = await createBootControl(config);
  } catch (e) {
    return { findings: [fromError(e, bc)], bootedSlot: undefined };
  }
  let bootedSlot: SlotName | undefined;
  const findings: DoctorFinding[] = [];
  try {
    bootedSlot = await control.getBootedSlot();
  } catch (e) {
    findings.push(
      problem(
        codeOf(e) === 'ERR_BOOTCTL_BOOTED_SLOT_UNKNOWN'
          ? 'ERR_BOOTCTL_BOOTED_SLOT_UNKNOWN'
          : 'ERR_BOOTCTL_STATE_INVALID',
        `${SUBJECT}.bootedSlot`,
        (e as Error).message,
        bc.backend === 'file'
          ? `a simulated device boots with "abota-agent simulate-reboot" (writes abota.slot= to ${config.kernelCmdlinePath})`
          : `add abota.slot=A or abota.slot=B to the kernel command line of each slot's boot entry (GRUB: linux ... abota.slot=A), or set bootControl.bootedSlot`,
      ),
    );
  }
  try {
    const primary = await control.getPrimarySlot();
    if (primary === undefined) {
      findings.push(
        problem(
          'ERR_BOOTCTL_STATE_INVALID',
          SUBJECT,
          'the bootloader state names no slot it would boot: the next boot ends in rescue',
          bc.backend === 'file'
            ? `run "abota-agent init --force" to reset ${bc.statePath}`
            : provisionHint(bc),
        ),
      );
    }
    const files = await stateFiles(config, bootedSlot ?? 'A');
    findings.push(...(await writable(files, SUBJECT)));
    if (bc.backend === 'uefi') findings.push(...(await efivarTools()));
  } catch (e) {
    findings.push(fromError(e, bc));
  }
  return { findings, bootedSlot };
}
