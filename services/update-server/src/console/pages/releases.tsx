// Releases: per release its version, security version, images (size, artifact size and codec),
// the deltas registered for it with their saving against the full artifact, the keys that signed
// it against the product's release threshold, and its expiry — with a warning ahead of it. The
// publisher's action (yank) goes through the admin API.
import type { ReleaseManifest, TrustRoot } from '@abota/manifest';
import { asc, desc, eq, inArray } from 'drizzle-orm';
import type { Context } from 'hono';
import type { AppDeps } from '../../context.js';
import { products, releaseDeltas, releases } from '../../db/schema.js';
import { bytes, query, when } from '../format.js';
import { actionFailed, may, ROLE_GROUPS, readable } from '../helpers.js';
import { CsrfField, renderPage } from '../layout.js';
import type { ConsoleDeps, ConsoleEnv, ConsolePage } from '../types.js';

/** Releases expiring within this many days are flagged. */
export const EXPIRY_WARNING_DAYS = 14;
const LIMIT = 100;
const DAY_MS = 86_400_000;

type Jws = { payload?: string; signatures?: { protected?: string }[] };

/** The kids that signed a General JWS (from each signature's protected header). */
function signerKids(jwsText: string): string[] {
  try {
    const jws = JSON.parse(jwsText) as Jws;
    return (jws.signatures ?? []).flatMap((s) => {
      const header = JSON.parse(Buffer.from(s.protected ?? '', 'base64url').toString('utf8')) as {
        kid?: string;
      };
      return header.kid === undefined ? [] : [header.kid];
    });
  } catch {
    return [];
  }
}

function rootOf(signed: unknown): TrustRoot | undefined {
  try {
    const payload = (signed as Jws).payload;
    return payload === undefined
      ? undefined
      : (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as TrustRoot);
  } catch {
    return undefined;
  }
}

export function expiryNote(expires: Date, now: Date): { text: string; level: 'ok' | 'warn' | 'bad' } {
  const days = Math.floor((expires.getTime() - now.getTime()) / DAY_MS);
  if (expires.getTime() <= now.getTime()) return { text: `expired ${when(expires)}`, level: 'bad' };
  if (days < EXPIRY_WARNING_DAYS)
    return {
      text: `expires in ${days === 0 ? 'less than a day' : `${days} d`} (${when(expires)})`,
      level: 'warn',
    };
  return { text: `${when(expires)} (in ${days} d)`, level: 'ok' };
}

const saving = (delta: number, full: number | undefined): string =>
  full === undefined || full === 0 ? '—' : `${Math.round((1 - delta / full) * 1000) / 10} %`;

async function releasesView(c: Context<ConsoleEnv>, deps: AppDeps) {
  const product = c.req.query('product') || undefined;
  const [productRows, rows] = await Promise.all([
    deps.db
      .select({ id: products.id, trustRoot: products.trustRoot })
      .from(products)
      .orderBy(asc(products.id)),
    deps.db
      .select()
      .from(releases)
      .where(product === undefined ? undefined : eq(releases.product, product))
      .orderBy(desc(releases.createdAt), desc(releases.id))
      .limit(LIMIT),
  ]);
  const deltas =
    rows.length === 0
      ? []
      : await deps.db
          .select()
          .from(releaseDeltas)
          .where(
            inArray(
              releaseDeltas.releaseId,
              rows.map((r) => r.id),
            ),
          )
          .orderBy(asc(releaseDeltas.image), asc(releaseDeltas.sourceVersion));
  const roots = new Map(productRows.map((p) => [p.id, rootOf(p.trustRoot)]));
  const now = deps.clock.now();
  const publish = may(c, ROLE_GROUPS.publish);
  return renderPage(
    c,
    { title: 'Releases', section: '/console/releases' },
    <>
      <form class="filters" method="get" action="/console/releases" aria-label="Filter releases">
        <div class="field">
          <label for="r-product">Product</label>
          <select id="r-product" name="product">
            <option value="">all products</option>
            {productRows.map((p) => (
              <option value={p.id} selected={p.id === product}>
                {p.id}
              </option>
            ))}
          </select>
        </div>
        <button type="submit">Show</button>
      </form>
      <p class="summary">
        {rows.length} {rows.length === 1 ? 'release' : 'releases'}
        {rows.length === LIMIT ? ` (the newest ${LIMIT})` : ''}; expiry is flagged {EXPIRY_WARNING_DAYS} days
        ahead.
      </p>
      {rows.map((r) => {
        const manifest = r.manifest as ReleaseManifest;
        const root = roots.get(r.product);
        const kids = signerKids(r.manifestJws);
        const threshold = root?.roles.release.threshold;
        const releaseKeys = root?.roles.release.keyIds.length;
        const expiry = expiryNote(r.expires, now);
        const images = Object.entries(manifest.images ?? {}) as [
          string,
          ReleaseManifest['images']['rootfs'] | undefined,
        ][];
        const mine = deltas.filter((d) => d.releaseId === r.id);
        return (
          <section class="release" aria-labelledby={`rel-${r.id}`} data-release={r.version}>
            <h2 id={`rel-${r.id}`}>
              {r.product} {r.version}
              {r.yanked ? <span class="bad"> — yanked</span> : null}
            </h2>
            <dl class="facts">
              <dt>Security version</dt>
              <dd>{r.securityVersion}</dd>
              <dt>Compatible</dt>
              <dd>{r.compatible.join(', ')}</dd>
              <dt>Pushed</dt>
              <dd>{when(r.createdAt)}</dd>
              <dt>Expires</dt>
              <dd class={expiry.level} data-expiry={expiry.level}>
                {expiry.level === 'ok' ? '' : '⚠ '}
                {expiry.text}
              </dd>
              <dt>Signed by</dt>
              <dd>
                {kids.length} of {releaseKeys ?? '?'} release keys (threshold {threshold ?? '?'}){' '}
                {kids.map((k) => (
                  <code title={k}>{k.slice(0, 12)}… </code>
                ))}
                {threshold !== undefined && kids.length < threshold ? (
                  <span class="bad"> below the threshold of the current trust root</span>
                ) : null}
              </dd>
              {r.yanked ? (
                <>
                  <dt>Yanked because</dt>
                  <dd>{r.yankedReason ?? ''}</dd>
                </>
              ) : null}
            </dl>
            <table>
              <caption class="visually-hidden">Images of {r.version}</caption>
              <thead>
                <tr>
                  <th scope="col">Image</th>
                  <th scope="col" class="num">
                    Size
                  </th>
                  <th scope="col" class="num">
                    Full artifact
                  </th>
                  <th scope="col">Codec</th>
                </tr>
              </thead>
              <tbody>
                {images.map(([name, img]) => (
                  <tr>
                    <td>{name}</td>
                    <td class="num">{bytes(img?.sizeBytes)}</td>
                    <td class="num">{bytes(img?.artifact.sizeBytes)}</td>
                    <td>{img?.artifact.codec ?? '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            {mine.length === 0 ? (
              <p class="help">No deltas registered.</p>
            ) : (
              <table class="deltas">
                <caption class="visually-hidden">Deltas to {r.version}</caption>
                <thead>
                  <tr>
                    <th scope="col">Delta</th>
                    <th scope="col">From</th>
                    <th scope="col" class="num">
                      Size
                    </th>
                    <th scope="col" class="num">
                      Saving vs full artifact
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {mine.map((d) => {
                    const full = (
                      manifest.images as Record<string, { artifact: { sizeBytes: number } } | undefined>
                    )[d.image]?.artifact.sizeBytes;
                    return (
                      <tr>
                        <td>{d.image}</td>
                        <td>{d.sourceVersion}</td>
                        <td class="num">{bytes(d.sizeBytes)}</td>
                        <td class="num" data-saving>
                          {saving(d.sizeBytes, full)}
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            )}
            {publish && !r.yanked ? (
              <form
                class="actions"
                method="post"
                action={`/console/releases/${r.id}/yank`}
                data-confirm={`Yank ${r.product} ${r.version}: it is never offered again (devices that installed it keep it).`}
              >
                <CsrfField c={c} />
                <div class="field">
                  <label for={`reason-${r.id}`}>Reason to yank {r.version}</label>
                  <input id={`reason-${r.id}`} name="reason" required maxlength={1024} size={40} />
                </div>
                <button type="submit" class="danger">
                  Yank {r.version}
                </button>
              </form>
            ) : null}
          </section>
        );
      })}
    </>,
  );
}

export const releasePages: ConsolePage = {
  nav: { href: '/console/releases', label: 'Releases', order: 30, visible: readable },
  register(app, deps: ConsoleDeps) {
    app.get('/console/releases', (c) => releasesView(c, deps));
    app.post('/console/releases/:id/yank', async (c) => {
      const id = c.req.param('id');
      const form = await c.req.parseBody();
      const back = `/console/releases${query({ product: undefined })}`;
      const result = await deps.api(
        c.get('session'),
        'POST',
        `/v1/admin/releases/${encodeURIComponent(id)}/yank`,
        {
          reason: String(form['reason'] ?? ''),
        },
      );
      return result.ok ? c.redirect(back, 303) : actionFailed(c, result, back);
    });
  },
};
