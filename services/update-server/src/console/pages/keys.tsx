// API keys (admin only): list, create with a role (the key is shown once), revoke. Everything here
// is the admin API's /v1/admin/api-keys called in-process; the console refuses other roles before
// the API does (the same 403 either way).
import type { Context } from 'hono';
import { API_KEY_ROLES } from '../../context.js';
import { when } from '../format.js';
import { roleAllows } from '../../auth/api-keys.js';
import { actionFailed, onlyFor, ROLE_GROUPS, SecretOnce } from '../helpers.js';
import { CsrfField, renderPage } from '../layout.js';
import type { ConsoleDeps, ConsoleEnv, ConsolePage } from '../types.js';

interface KeyRow {
  id: string;
  name: string;
  role: string;
  createdAt: string;
  revokedAt: string | null;
}

async function keysView(c: Context<ConsoleEnv>, deps: ConsoleDeps, created?: { name: string; key: string }) {
  const result = await deps.api<{ items: KeyRow[] }>(c.get('session'), 'GET', '/v1/admin/api-keys');
  if (!result.ok) return actionFailed(c, result, '/console/fleet');
  const self = c.get('session').key.id;
  return renderPage(
    c,
    { title: 'API keys', section: '/console/keys', ...(created === undefined ? {} : { status: 201 }) },
    <>
      {created === undefined ? null : (
        <SecretOnce what="Key" name={created.name} secret={created.key} id="new-key" />
      )}
      <form class="filters" method="post" action="/console/keys">
        <CsrfField c={c} />
        <div class="field">
          <label for="k-name">Name</label>
          <input id="k-name" name="name" required maxlength={128} />
        </div>
        <div class="field">
          <label for="k-role">Role</label>
          <select id="k-role" name="role">
            {API_KEY_ROLES.map((r) => (
              <option value={r} selected={r === 'viewer'}>
                {r}
              </option>
            ))}
          </select>
        </div>
        <button type="submit">Create key</button>
      </form>
      <table>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Role</th>
            <th scope="col">Created</th>
            <th scope="col">Revoked</th>
            <th scope="col">
              <span class="visually-hidden">Action</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {result.body.items.map((k) => (
            <tr>
              <td>{k.name}</td>
              <td>{k.role}</td>
              <td>{when(k.createdAt)}</td>
              <td>{k.revokedAt === null ? '—' : when(k.revokedAt)}</td>
              <td>
                {k.revokedAt !== null || k.id === self ? null : (
                  <form
                    method="post"
                    action={`/console/keys/${k.id}/revoke`}
                    data-confirm={`Revoke key "${k.name}" (${k.role}): every call and console session made with it is refused from now on.`}
                  >
                    <CsrfField c={c} />
                    <button type="submit" class="danger" aria-label={`Revoke key ${k.name}`}>
                      Revoke
                    </button>
                  </form>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>,
  );
}

export const keyPages: ConsolePage = {
  nav: {
    href: '/console/keys',
    label: 'API keys',
    order: 50,
    visible: (role) => roleAllows(role, ROLE_GROUPS.admin),
  },
  register(app, deps: ConsoleDeps) {
    const admins = onlyFor(ROLE_GROUPS.admin);
    app.use('/console/keys', admins);
    app.use('/console/keys/*', admins);
    app.get('/console/keys', (c) => keysView(c, deps));
    app.post('/console/keys', async (c) => {
      const form = await c.req.parseBody();
      const result = await deps.api<{ name: string; key: string }>(
        c.get('session'),
        'POST',
        '/v1/admin/api-keys',
        {
          name: String(form['name'] ?? ''),
          role: String(form['role'] ?? ''),
        },
      );
      return result.ok ? keysView(c, deps, result.body) : actionFailed(c, result, '/console/keys');
    });
    app.post('/console/keys/:id/revoke', async (c) => {
      const result = await deps.api(
        c.get('session'),
        'POST',
        `/v1/admin/api-keys/${encodeURIComponent(c.req.param('id'))}/revoke`,
      );
      return result.ok ? c.redirect('/console/keys', 303) : actionFailed(c, result, '/console/keys');
    });
  },
};
