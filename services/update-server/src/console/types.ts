// What a console page module sees: the console's Hono env (the signed-in session, the nav), the
// server's parts plus `api` (the admin API called in-process as the session's key), and the
// shape of a page module (`ConsolePage`: an optional nav entry and its routes). Adding a page to
// the console = one line in pages.ts.
import type { Hono } from 'hono';
import type { ApiKeyRole, AppDeps, AppEnv } from '../context.js';
import type { ConsoleSession } from './session.js';

export interface NavEntry {
  href: string;
  label: string;
  /** Position in the nav (Fleet 10, Rollouts 20, Releases 30, Audit 40, Tokens 45, Keys 50). */
  order: number;
  /** Shown only to roles that may open it. */
  visible: (role: ApiKeyRole) => boolean;
}

export interface ConsoleEnv {
  Variables: AppEnv['Variables'] & { session: ConsoleSession; nav: readonly NavEntry[] };
}

export type ConsoleApp = Hono<ConsoleEnv>;

/** The admin API's answer to an in-process call: status and parsed JSON body. */
export interface ApiResult<T = unknown> {
  ok: boolean;
  status: number;
  body: T;
  /** `{ error: { code, message } }` of a refused call, else undefined. */
  error?: { code: string; message: string };
}

/**
 * Calls the admin API in-process as the session's API key: the same routes, validation, role
 * checks (requireRole) and audit records as `Authorization: Bearer abk_...`.
 */
export type ApiCaller = <T = unknown>(
  session: ConsoleSession,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  body?: unknown,
) => Promise<ApiResult<T>>;

export interface ConsoleDeps extends AppDeps {
  api: ApiCaller;
}

export interface ConsolePage {
  nav?: NavEntry;
  /** Adds the module's routes (GET pages under /console/..., POST actions). */
  register(app: ConsoleApp, deps: ConsoleDeps): void;
}
