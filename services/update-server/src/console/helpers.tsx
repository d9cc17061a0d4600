// Helpers of the console's page modules: the role check (the API's own ROLE_GROUPS and
// roleAllows, so a button is shown exactly when the API would accept its action) and the page
// of a refused action.
import type { Context } from 'hono';
import { ROLE_GROUPS, roleAllows } from '../auth/api-keys.js';
import type { ApiKeyRole } from '../context.js';
import { renderPage } from './layout.js';
import type { ApiResult, ConsoleEnv } from './types.js';

/** May the signed-in key do what this ROLE_GROUPS group allows? (what the API will check) */
export const may = (c: Context<ConsoleEnv>, group: readonly ApiKeyRole[]): boolean =>
  roleAllows(c.get('session').key.role, group);

export { ROLE_GROUPS };

/** A refused console action: the API's status and its message, with a way back. */
export function actionFailed(
  c: Context<ConsoleEnv>,
  result: ApiResult,
  back: string,
): Response | Promise<Response> {
  const error = result.error ?? { code: 'ERR_INTERNAL', message: `HTTP ${result.status}` };
  return renderPage(
    c,
    { title: 'Action refused', status: result.status },
    <div role="alert" class="error">
      <p>
        <strong>{error.code}</strong>: {error.message}
      </p>
      <p>
        <a href={back}>Back</a>
      </p>
    </div>,
  );
}

/** Nav visibility of the read-only pages: every role that may read (ROLE_GROUPS.read). */
export const readable = (role: ApiKeyRole): boolean => roleAllows(role, ROLE_GROUPS.read);
