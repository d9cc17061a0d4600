// What a command table (cli/*.ts) and its lazily loaded actions (commands/*.ts) share: the parsed
// flag shapes and the API key roles. Its own module, so an action never imports the table that
// loads it (no import circle: npm run check:layers).
import type { ApiKeyRole } from '@abota/api';

/** The server's roles (API_KEY_ROLES), here for --help without loading the schemas. */
export const ROLES = ['admin', 'publisher', 'operator', 'viewer'] as const satisfies readonly ApiKeyRole[];
/** Fails the typecheck when the server has a role ROLES does not list. */
const everyRoleListed: [Exclude<ApiKeyRole, (typeof ROLES)[number]>] extends [never] ? true : never = true;
void everyRoleListed;

export interface RoleFlags {
  rootKeys?: string;
  rootThreshold?: string;
  releaseKeys?: string;
  releaseThreshold?: string;
  expires?: string;
  passphraseEnv?: string;
  rootKeysDir?: string;
  json?: boolean;
}

export interface TreeOptions {
  salt?: string;
  uuid?: string;
  format?: string;
  hash?: string;
  dataBlockSize?: string;
  hashBlockSize?: string;
  dataBlocks?: string;
  hashOffset?: string;
  superblock: boolean;
  rootHashFile?: string;
  threads?: string;
  json?: boolean;
}
