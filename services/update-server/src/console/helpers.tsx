// Helpers of the console's page modules: the role check (the API's own ROLE_GROUPS and
// roleAllows, so a button is shown exactly when the API would accept its action), the gate of a
// page the console keeps to a narrower group than its API, the page of a refused action and the
// notice of a secret shown once.
import type { Context, MiddlewareHandler } from 'hono';
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

/**
 * Refuses (403, nothing done) every request of a page to roles outside `group`, for pages the
 * console keeps narrower than the API behind them (the provisioning tokens page is admin only,
 * the token API also takes operators).
 */
export function onlyFor(group: readonly ApiKeyRole[]): MiddlewareHandler<ConsoleEnv> {
  return async (c, next) => {
    const role = c.get('session').key.role;
    if (roleAllows(role, group)) return next();
    return actionFailed(
      c,
      {
        ok: false,
        status: 403,
        body: undefined,
        error: {
          code: 'ERR_FORBIDDEN',
          message: `role "${role}" may not use this console page; needs one of: ${group.join(', ')}`,
        },
      },
      '/console/fleet',
    );
  };
}

/** A credential just created: shown this once (it is stored only as its SHA-256). */
export function SecretOnce(props: { what: string; name: string; secret: string; id: string }) {
  return (
    <div class="notice" role="status">
      <p>
        {props.what} <strong>{props.name}</strong> created. Copy it now; it is not shown again:
      </p>
      <p>
        <code id={props.id}>{props.secret}</code>
      </p>
    </div>
  );
}
