// The console's page modules, in one list: adding a page is one line here (its module exports a
// ConsolePage: an optional nav entry and a `register(app, deps)` that adds its routes).
import { auditPages } from './pages/audit.js';
import { devicePages } from './pages/device.js';
import { fleetPages } from './pages/fleet.js';
import { keyPages } from './pages/keys.js';
import { releasePages } from './pages/releases.js';
import { rolloutPages } from './pages/rollouts.js';
import { tokenPages } from './pages/tokens.js';
import type { ConsolePage } from './types.js';

export const CONSOLE_PAGES: readonly ConsolePage[] = [
  fleetPages,
  devicePages,
  rolloutPages,
  releasePages,
  auditPages,
  tokenPages,
  keyPages,
];
