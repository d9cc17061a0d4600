// What the running agent is: its version and build time. The bundle (scripts/bundle.mjs) defines
// both; the unbundled modules (tests, the library) have neither and report a development build.
declare const ABOTA_AGENT_VERSION: string | undefined;
declare const ABOTA_AGENT_BUILT_AT: string | undefined;

export interface BuildInfo {
  version: string;
  /** Undefined in a development build: then no clock check can use it. */
  builtAt: Date | undefined;
}

export function buildInfo(): BuildInfo {
  const version = typeof ABOTA_AGENT_VERSION === 'string' ? ABOTA_AGENT_VERSION : '0.0.0-dev';
  const builtAt = typeof ABOTA_AGENT_BUILT_AT === 'string' ? new Date(ABOTA_AGENT_BUILT_AT) : undefined;
  return { version, builtAt };
}
