// Provisioning tokens (admin only, issue 17): the tokens with their uses left and expiry, create
// one for a product with a bounded number of uses and a lifetime (the token is shown once),
// revoke. The admin API's /v1/admin/provisioning-tokens does the work in-process; it also takes
// operator keys (the CLI), so the console's own gate keeps the page to admins.
import type { Context } from 'hono';
import { count, when } from '../format.js';
import { actionFailed, onlyFor, ROLE_GROUPS, SecretOnce } from '../helpers.js';
import { roleAllows } from '../../auth/api-keys.js';
import { CsrfField, renderPage } from '../layout.js';
import type { ConsoleDeps, ConsoleEnv, ConsolePage } from '../types.js';

interface TokenRow {
  id: string;
  product: string;
  description: string;
  expiresAt: string;
  revokedAt: string | null;
  maxUses: number;
  uses: number;
  createdAt: string;
}

/** The lifetimes offered (the API takes 60 s to 365 days). */
export const TOKEN_LIFETIMES: readonly { label: string; seconds: number }[] = [
  { label: '1 hour', seconds: 3600 },
  { label: '1 day', seconds: 86_400 },
  { label: '7 days', seconds: 7 * 86_400 },
  { label: '30 days', seconds: 30 * 86_400 },
];
/** Largest batch the form offers; the API allows more (abota token create --max-uses). */
const MAX_USES_IN_FORM = 10_000;

const tokenState = (t: TokenRow, now: Date): 'revoked' | 'expired' | 'used up' | 'active' =>
  t.revokedAt !== null
    ? 'revoked'
    : Date.parse(t.expiresAt) <= now.getTime()
      ? 'expired'
      : t.uses >= t.maxUses
        ? 'used up'
        : 'active';

async function tokensView(
  c: Context<ConsoleEnv>,
  deps: ConsoleDeps,
  created?: TokenRow & { token: string },
): Promise<Response> {
  const session = c.get('session');
  const [tokens, products] = await Promise.all([
    deps.api<{ items: TokenRow[] }>(session, 'GET', '/v1/admin/provisioning-tokens'),
    deps.api<{ items: { id: string }[] }>(session, 'GET', '/v1/admin/products'),
  ]);
  if (!tokens.ok) return actionFailed(c, tokens, '/console/fleet');
  if (!products.ok) return actionFailed(c, products, '/console/fleet');
  const now = deps.clock.now();
  // Newest first: the API lists oldest first.
  const rows = [...tokens.body.items].reverse();
  return renderPage(
    c,
    {
      title: 'Provisioning tokens',
      section: '/console/tokens',
      ...(created === undefined ? {} : { status: 201 }),
    },
    <>
      {created === undefined ? null : (
        <SecretOnce
          what="Token"
          name={`for ${created.product} (${created.maxUses === 1 ? '1 device' : `${count(created.maxUses)} devices`}, until ${when(created.expiresAt)})`}
          secret={created.token}
          id="new-token"
        />
      )}
      <p class="help">
        A device registers once with a token of its product (<code>abota-agent register --token …</code>);
        each registration uses it up by one. Tokens are stored only as their SHA-256.
      </p>
      {products.body.items.length === 0 ? (
        <p>No product yet: create one first (abota product create).</p>
      ) : (
        <form class="filters" method="post" action="/console/tokens">
          <CsrfField c={c} />
          <div class="field">
            <label for="t-product">Product</label>
            <select id="t-product" name="product">
              {products.body.items.map((p) => (
                <option value={p.id}>{p.id}</option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="t-uses">Devices (uses)</label>
            <input
              id="t-uses"
              name="maxUses"
              type="number"
              min={1}
              max={MAX_USES_IN_FORM}
              value="1"
              required
            />
          </div>
          <div class="field">
            <label for="t-expires">Expires in</label>
            <select id="t-expires" name="expiresInSeconds">
              {TOKEN_LIFETIMES.map((l) => (
                <option value={String(l.seconds)} selected={l.seconds === 86_400}>
                  {l.label}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="t-description">Description</label>
            <input
              id="t-description"
              name="description"
              maxlength={1024}
              placeholder="e.g. line 3, batch 42"
            />
          </div>
          <button type="submit">Create token</button>
        </form>
      )}
      <table class="tokens">
        <thead>
          <tr>
            <th scope="col">Product</th>
            <th scope="col">Description</th>
            <th scope="col">Uses left</th>
            <th scope="col">Expires</th>
            <th scope="col">Created</th>
            <th scope="col">State</th>
            <th scope="col">
              <span class="visually-hidden">Action</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map((t) => {
            const state = tokenState(t, now);
            const left = Math.max(0, t.maxUses - t.uses);
            const label =
              t.description === '' ? `${t.product} token` : `${t.product} token "${t.description}"`;
            return (
              <tr data-token={t.id} data-state={state}>
                <td>{t.product}</td>
                <td>{t.description === '' ? '—' : t.description}</td>
                <td>
                  {count(left)} of {count(t.maxUses)}
                </td>
                <td>{when(t.expiresAt)}</td>
                <td>{when(t.createdAt)}</td>
                <td>{state}</td>
                <td>
                  {state !== 'active' ? null : (
                    <form
                      method="post"
                      action={`/console/tokens/${t.id}/revoke`}
                      data-confirm={`Revoke the ${label}: ${left === 1 ? 'the 1 device' : `the ${count(left)} devices`} not yet registered with it can no longer register. Devices already registered keep working.`}
                    >
                      <CsrfField c={c} />
                      <button type="submit" class="danger" aria-label={`Revoke ${label}`}>
                        Revoke
                      </button>
                    </form>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {rows.length === 0 ? <p>No provisioning tokens yet.</p> : null}
    </>,
  );
}

/** A form field as the API's integer, or the text as given (the API's validation then says what is wrong). */
const integerField = (v: unknown): number | string => {
  const text = String(v ?? '').trim();
  return /^\d{1,9}$/.test(text) ? Number(text) : text;
};

export const tokenPages: ConsolePage = {
  nav: {
    href: '/console/tokens',
    label: 'Tokens',
    order: 45,
    visible: (role) => roleAllows(role, ROLE_GROUPS.admin),
  },
  register(app, deps: ConsoleDeps) {
    const admins = onlyFor(ROLE_GROUPS.admin);
    app.use('/console/tokens', admins);
    app.use('/console/tokens/*', admins);
    app.get('/console/tokens', (c) => tokensView(c, deps));
    app.post('/console/tokens', async (c) => {
      const form = await c.req.parseBody();
      const description = String(form['description'] ?? '').trim();
      const result = await deps.api<TokenRow & { token: string }>(
        c.get('session'),
        'POST',
        '/v1/admin/provisioning-tokens',
        {
          product: String(form['product'] ?? ''),
          maxUses: integerField(form['maxUses']),
          expiresInSeconds: integerField(form['expiresInSeconds']),
          ...(description === '' ? {} : { description }),
        },
      );
      return result.ok ? tokensView(c, deps, result.body) : actionFailed(c, result, '/console/tokens');
    });
    app.post('/console/tokens/:id/revoke', async (c) => {
      const result = await deps.api(
        c.get('session'),
        'POST',
        `/v1/admin/provisioning-tokens/${encodeURIComponent(c.req.param('id'))}/revoke`,
      );
      return result.ok ? c.redirect('/console/tokens', 303) : actionFailed(c, result, '/console/tokens');
    });
  },
};
