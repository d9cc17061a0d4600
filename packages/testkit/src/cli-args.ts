// Command lines of the `abota` CLI that many tests run the same way, so each test states only
// what it varies.

export interface ReleaseBuildArgs {
  image: string;
  keys: string;
  out: string;
  boot?: string;
  product?: string;
  compatible?: string;
  version?: string;
  securityVersion?: number;
  expires?: string;
  json?: boolean;
}

/** `release build ...` with every required option (product p, hardware hw, 1.0.0, 30 days unless given). */
export function releaseBuildArgs(o: ReleaseBuildArgs): string[] {
  return [
    'release',
    'build',
    '--image',
    o.image,
    ...(o.boot === undefined ? [] : ['--boot', o.boot]),
    '--product',
    o.product ?? 'p',
    '--compatible',
    o.compatible ?? 'hw',
    '--version',
    o.version ?? '1.0.0',
    '--security-version',
    String(o.securityVersion ?? 1),
    '--expires',
    o.expires ?? '30d',
    '--keys',
    o.keys,
    '--out',
    o.out,
    ...(o.json === true ? ['--json'] : []),
  ];
}
