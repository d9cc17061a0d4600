// Builds the configured BootControl backend (src/bootctl) from the agent config.
import { readFile } from 'node:fs/promises';
import {
  type BootControl,
  FileBootControl,
  GrubBootControl,
  parseFwEnvConfig,
  UBootBootControl,
  UefiBootControl,
} from './bootctl/index.js';
import type { UBootConvention } from './bootctl/uboot.js';
import type { AgentConfig } from './config.js';
import { ClientError } from './errors.js';

export async function createBootControl(config: AgentConfig): Promise<BootControl> {
  const bc = config.bootControl;
  const source = {
    cmdlinePath: config.kernelCmdlinePath,
    ...(bc.bootedSlot !== undefined ? { bootedSlot: bc.bootedSlot } : {}),
  };
  switch (bc.backend) {
    case 'file':
      return new FileBootControl({
        ...source,
        statePath: bc.statePath,
        ...(bc.tryBoots ? { tryBoots: bc.tryBoots } : {}),
      });
    case 'uefi':
      return new UefiBootControl({
        ...source,
        mode: bc.mode,
        efivars: bc.efivarsPath,
        espPath: bc.espPath,
        ...(bc.bootEntries ? { bootEntries: bc.bootEntries } : {}),
        ...(bc.ukiNames ? { ukiNames: bc.ukiNames } : {}),
        ...(bc.tryBoots ? { tryBoots: bc.tryBoots } : {}),
      });
    case 'grub':
      return new GrubBootControl({ ...source, envPath: bc.envPath });
    case 'uboot': {
      let text: string;
      try {
        text = await readFile(bc.fwEnvConfigPath, 'utf8');
      } catch (e) {
        throw new ClientError(
          'ERR_CONFIG_INVALID',
          `bootControl.fwEnvConfigPath ${bc.fwEnvConfigPath} cannot be read: ${(e as Error).message}`,
        );
      }
      return new UBootBootControl({
        ...source,
        env: parseFwEnvConfig(text, bc.fwEnvConfigPath),
        convention: bc.convention as UBootConvention,
      });
    }
  }
}
