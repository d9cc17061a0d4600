// The console's page frame (hono/jsx, rendered on the server): skip link, navigation, who is signed
// in with the sign-out form, the page's <h1> and content. Pages pass the extra scripts they need
// (e.g. uPlot); console.js is on every page. No inline script or style (the CSP forbids them).
import { raw } from 'hono/html';
import type { Child } from 'hono/jsx';
import type { Context } from 'hono';
import { type AssetName, assetUrl } from './assets.js';
import type { ConsoleEnv, NavEntry } from './types.js';

export interface PageOptions {
  title: string;
  /** The nav entry this page belongs to (its href), marked aria-current. */
  section?: string;
  scripts?: readonly AssetName[];
  styles?: readonly AssetName[];
  /** HTTP status (error pages). */
  status?: number;
}

/** Every page's JavaScript: console.js plus what it asks for. */
export const pageScripts = (o: Pick<PageOptions, 'scripts'>): AssetName[] => [
  'console.js',
  ...(o.scripts ?? []),
];

export function Document(props: {
  title: string;
  scripts: readonly AssetName[];
  styles: readonly AssetName[];
  children: Child;
}) {
  return (
    <>
      {raw('<!DOCTYPE html>')}
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <title>{`${props.title} · abota console`}</title>
          <link rel="icon" href="data:," />
          <link rel="stylesheet" href={assetUrl('console.css')} />
          {props.styles.map((s) => (
            <link rel="stylesheet" href={assetUrl(s)} />
          ))}
          {props.scripts.map((s) => (
            <script src={assetUrl(s)} defer />
          ))}
        </head>
        <body>{props.children}</body>
      </html>
    </>
  );
}

function Nav(props: { nav: readonly NavEntry[]; section: string | undefined }) {
  return (
    <nav aria-label="Console">
      <a class="brand" href="/console/fleet">
        abota
      </a>
      <ul>
        {props.nav.map((n) => (
          <li>
            <a href={n.href} aria-current={n.href === props.section ? 'page' : undefined}>
              {n.label}
            </a>
          </li>
        ))}
      </ul>
    </nav>
  );
}

/** A full console page for the signed-in key: nav (only what its role may see), sign-out, content. */
export function renderPage(
  c: Context<ConsoleEnv>,
  o: PageOptions,
  content: Child,
): Response | Promise<Response> {
  const session = c.get('session');
  const nav = c.get('nav').filter((n) => n.visible(session.key.role));
  const body = (
    <Document title={o.title} scripts={pageScripts(o)} styles={o.styles ?? []}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Nav nav={nav} section={o.section} />
        <form class="who" method="post" action="/console/sign-out">
          <span>
            Signed in as <strong>{session.key.name}</strong> (<span data-role>{session.key.role}</span>)
          </span>
          <CsrfField c={c} />
          <button type="submit">Sign out</button>
        </form>
      </header>
      <main id="main" tabindex={-1}>
        <h1>{o.title}</h1>
        {content}
      </main>
    </Document>
  );
  return c.html(body, (o.status ?? 200) as 200);
}

/** The hidden CSRF field every state-changing form carries (checked by the console router). */
export function CsrfField(props: { c: Context<ConsoleEnv> }) {
  return <input type="hidden" name="_csrf" value={props.c.get('session').csrf} />;
}
