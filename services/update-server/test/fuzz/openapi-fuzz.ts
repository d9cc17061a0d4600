// OpenAPI-driven request generators for the fuzz test (openapi-fuzz.test.ts): the server's own
// OpenAPI 3.1 document (GET /openapi.json) lists every operation with its parameters, body
// schema and security; from each one this builds seeded fast-check arbitraries of requests that
// start from a schema-conforming request and break exactly one thing — a body field (wrong type,
// NUL bytes, huge or unicode strings, deep nesting, negative or huge numbers), a missing required
// field, the whole body, the content type, a path or query parameter (bad UUIDs, cursors, NULs),
// a header, or the credentials. Nothing here knows a route by name except fleetValue(), which
// maps path parameters to the seeded fleet so that mutated requests reach past the 404s.
import fc from 'fast-check';

export type JsonSchema = {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minItems?: number;
  maxItems?: number;
  additionalProperties?: boolean | JsonSchema;
  default?: unknown;
};

interface OpenApiParameter {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required?: boolean;
  schema?: JsonSchema;
}

export interface OpenApiDocument {
  paths: Record<string, Record<string, unknown>>;
  components?: { schemas?: Record<string, JsonSchema> };
}

/** Who may call an operation, from its `security` list. */
export type Security = 'none' | 'device' | 'apiKey' | 'deviceOrApiKey';

export interface Operation {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** The OpenAPI path template, e.g. /v1/admin/releases/{id}. */
  path: string;
  params: OpenApiParameter[];
  body?: { contentType: string; schema: JsonSchema; required: boolean };
  security: Security;
}

/** One generated request, kept printable: fast-check shows it as the counterexample. */
export interface FuzzRequest {
  method: string;
  /** Path with parameters substituted (already percent-encoded) and the query string. */
  url: string;
  /** Which credentials to send: a fleet identity the test resolves, or a literal header value. */
  auth: AuthChoice;
  headers: Record<string, string>;
  body?: string;
  /** What was broken, for the failure message. */
  mutation: string;
  /** The credentials are wrong for this route: anything but a 401/403 is a defect. */
  mustRefuse?: true;
}

export type AuthChoice =
  | { kind: 'valid' }
  | { kind: 'role'; role: string }
  | { kind: 'device' }
  /** A device JWT that must be refused: expired, other audience, wrong key, unknown device, replayed jti. */
  | {
      kind: 'deviceBad';
      variant: 'expired' | 'audience' | 'foreignKey' | 'unknownDevice' | 'replayed' | 'longLived';
    }
  | { kind: 'none' }
  | { kind: 'raw'; header: string };

/** Values of the seeded fleet, by what a path parameter names. */
export interface Fleet {
  productId: string;
  releaseId: string;
  deviceId: string;
  /** A second device: the one decommission may hit, so the device routes keep a live device. */
  spareDeviceId: string;
  rolloutId: string;
  uploadId: string;
  blobHex: string;
  tokenId: string;
  /** An API key nobody authenticates with: the one revoke may hit. */
  spareApiKeyId: string;
}

const METHODS = new Set(['get', 'post', 'put', 'delete']);

export function operationsFromDocument(doc: OpenApiDocument): Operation[] {
  const ops: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, raw] of Object.entries(item)) {
      if (!METHODS.has(method)) continue;
      const op = raw as {
        parameters?: OpenApiParameter[];
        requestBody?: { required?: boolean; content: Record<string, { schema?: JsonSchema }> };
        security?: Record<string, string[]>[];
      };
      const schemes = new Set((op.security ?? []).flatMap((s) => Object.keys(s)));
      const security: Security =
        schemes.has('deviceJwt') && schemes.has('apiKey')
          ? 'deviceOrApiKey'
          : schemes.has('deviceJwt')
            ? 'device'
            : schemes.has('apiKey')
              ? 'apiKey'
              : 'none';
      const content = op.requestBody?.content ?? {};
      const contentType = Object.keys(content)[0];
      ops.push({
        method: method.toUpperCase() as Operation['method'],
        path,
        params: (op.parameters ?? []).map((p) => ({ ...p, schema: resolve(doc, p.schema ?? {}) })),
        ...(contentType === undefined
          ? {}
          : {
              body: {
                contentType,
                schema: resolve(doc, content[contentType]?.schema ?? {}),
                required: op.requestBody?.required === true,
              },
            }),
        security,
      });
    }
  }
  return ops;
}

/** Inlines `$ref`s (components.schemas only; the document has no recursive schemas). */
export function resolve(doc: OpenApiDocument, schema: JsonSchema, depth = 0): JsonSchema {
  if (depth > 32) return {};
  if (schema.$ref !== undefined) {
    const name = schema.$ref.replace('#/components/schemas/', '');
    return resolve(doc, doc.components?.schemas?.[name] ?? {}, depth + 1);
  }
  const out: JsonSchema = { ...schema };
  if (schema.properties !== undefined) {
    out.properties = Object.fromEntries(
      Object.entries(schema.properties).map(([k, v]) => [k, resolve(doc, v, depth + 1)]),
    );
  }
  if (schema.items !== undefined) out.items = resolve(doc, schema.items, depth + 1);
  for (const key of ['anyOf', 'oneOf', 'allOf'] as const) {
    const list = schema[key];
    if (list !== undefined) out[key] = list.map((s) => resolve(doc, s, depth + 1));
  }
  if (typeof schema.additionalProperties === 'object') {
    out.additionalProperties = resolve(doc, schema.additionalProperties, depth + 1);
  }
  return out;
}

// ---- schema-conforming values (the starting point every mutation breaks one thing of) ----

const HEX = '0123456789abcdef';
const hexString = (n: number) => fc.string({ unit: fc.constantFrom(...HEX), minLength: n, maxLength: n });

function stringFor(schema: JsonSchema): fc.Arbitrary<string> {
  if (schema.format === 'uuid') return fc.uuid();
  if (schema.format === 'date-time') return fc.date({ noInvalidDate: true }).map((d) => d.toISOString());
  if (schema.pattern !== undefined) {
    // The server's patterns are simple; a few are recognised, the rest fall back to matching text.
    if (/\[0-9a-f\]\{64\}/.test(schema.pattern))
      return hexString(64).map((h) => (schema.pattern?.includes('sha256:') ? `sha256:${h}` : h));
    try {
      return fc
        .stringMatching(new RegExp(schema.pattern))
        .filter((s) => s.length <= (schema.maxLength ?? 256));
    } catch {
      return fc.constant('a');
    }
  }
  return fc.string({ minLength: schema.minLength ?? 0, maxLength: Math.min(schema.maxLength ?? 24, 24) });
}

export function validValue(schema: JsonSchema, depth = 0): fc.Arbitrary<unknown> {
  if (depth > 8) return fc.constant(null);
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum !== undefined && schema.enum.length > 0) return fc.constantFrom(...schema.enum);
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives !== undefined && alternatives.length > 0) {
    return fc.oneof(...alternatives.map((s) => validValue(s, depth + 1)));
  }
  if (schema.allOf !== undefined && schema.allOf.length > 0) {
    return validValue(Object.assign({}, ...schema.allOf) as JsonSchema, depth + 1);
  }
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
  switch (type) {
    case 'string':
      return stringFor(schema);
    case 'integer':
      return fc.integer({
        min: schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : 0),
        max: Math.min(
          schema.maximum ?? 1000,
          schema.exclusiveMaximum !== undefined ? schema.exclusiveMaximum - 1 : 1000,
        ),
      });
    case 'number':
      return fc.double({ min: schema.minimum ?? 0, max: schema.maximum ?? 1000, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'array':
      return fc.array(validValue(schema.items ?? {}, depth + 1), {
        minLength: schema.minItems ?? 0,
        maxLength: Math.max(schema.minItems ?? 0, Math.min(schema.maxItems ?? 3, 3)),
      });
    case 'object':
    case undefined: {
      if (schema.properties === undefined) return fc.constant({});
      const required = new Set(schema.required ?? []);
      const entries = Object.entries(schema.properties);
      return fc.record(Object.fromEntries(entries.map(([k, v]) => [k, validValue(v, depth + 1)])), {
        requiredKeys: entries.map(([k]) => k).filter((k) => required.has(k)),
      });
    }
    default:
      return fc.constant(null);
  }
}

// ---- hostile values ----

/** Raw JSON fragments spliced into a serialised body (values JSON.stringify cannot build cheaply). */
const RAW = '\u0001FUZZRAW';

export interface Hostile {
  /** A JSON value, or a raw JSON fragment (deep nesting) marked for splicing. */
  value: unknown;
  label: string;
}

const deep = (depth: number, open: string, close: string, leaf = '0') =>
  `${open.repeat(depth)}${leaf}${close.repeat(depth)}`;

export function hostileValue(maxBodyBytes: number): fc.Arbitrary<Hostile> {
  const h = (label: string, value: unknown): Hostile => ({ label, value });
  return fc.oneof(
    fc.constantFrom(
      h('null', null),
      h('true', true),
      h('zero', 0),
      h('negative', -1),
      h('negative huge', -1e308),
      h('huge integer', 2 ** 63),
      h('fraction', 0.5),
      h('empty string', ''),
      h('NUL', '\u0000'),
      h('NUL inside', 'eflow\u0000vm'),
      h('lone surrogate', '\ud800'),
      h('RTL + combining unicode', '\u202e\u0301e\u0301\u{1f4a5}\u{10ffff}'),
      h('empty array', []),
      h('empty object', {}),
      h('__proto__ object', JSON.parse('{"__proto__":{"polluted":1}}')),
      h('not a uuid', '00000000-0000-0000-0000-00000000000g'),
      h('nil uuid', '00000000-0000-0000-0000-000000000000'),
      h('SQL', "'; drop table devices; --"),
      h('path traversal', '../../etc/passwd'),
      h('number as string', '12'),
      h('NaN as string', 'NaN'),
      h('date out of range', '+275760-09-13T00:00:00.001Z'),
    ),
    fc.string({ unit: 'binary', maxLength: 40 }).map((s) => h('random unicode', s)),
    fc
      .string({ unit: fc.constantFrom('\u0000', 'a', '\u00e9', '\ufffd', '\ud83d'), maxLength: 30 })
      .map((s) => h('NUL/unicode mix', s)),
    fc
      .constantFrom(1000, 65_536, Math.floor(maxBodyBytes * 0.9))
      .map((n) => h(`string of ${n} chars`, 'x'.repeat(n))),
    fc
      .constantFrom(64, 1000, 20_000)
      .chain((d) =>
        fc.constantFrom(
          h(`${d}-deep arrays`, `${RAW}${deep(d, '[', ']')}`),
          h(`${d}-deep objects`, `${RAW}${deep(d, '{"a":', '}')}`),
        ),
      ),
    fc.array(fc.integer(), { minLength: 10_000, maxLength: 10_000 }).map((a) => h('10k-element array', a)),
  );
}

/** JSON.stringify with the raw fragments spliced in. */
export function serialise(value: unknown): string {
  const raws: string[] = [];
  const text = JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'string' && v.startsWith(RAW)) {
      raws.push(v.slice(RAW.length));
      return `${RAW}${raws.length - 1}`;
    }
    return v;
  });
  if (text === undefined) return '';
  return text.replace(/"\\u0001FUZZRAW(\d+)"/g, (_m, i: string) => raws[Number(i)] ?? 'null');
}

// ---- body mutations ----

function leafPaths(value: unknown, prefix: string[] = [], out: string[][] = []): string[][] {
  out.push(prefix);
  if (prefix.length < 6 && value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) leafPaths(v, [...prefix, k], out);
  }
  return out;
}

function setAt(root: unknown, path: string[], replacement: unknown): unknown {
  if (path.length === 0) return replacement;
  const copy = structuredClone(root) as Record<string, unknown>;
  let node = copy;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string, unknown>;
  node[path[path.length - 1] as string] = replacement;
  return copy;
}

function deleteAt(root: unknown, path: string[]): unknown {
  const copy = structuredClone(root) as Record<string, unknown>;
  let node = copy;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string, unknown>;
  if (Array.isArray(node)) node.splice(Number(path[path.length - 1]), 1);
  else delete node[path[path.length - 1] as string];
  return copy;
}

// ---- path, query, header and auth mutations ----

/** Path-segment values: bad UUIDs, NULs, traversal, huge, unicode (percent-encoded as a client would). */
const hostileSegment = fc.oneof(
  fc.constantFrom(
    'not-a-uuid',
    '00000000-0000-0000-0000-000000000000',
    'ffffffff-ffff-ffff-ffff-ffffffffffff',
    '%00',
    'a%00b',
    '..',
    '%2e%2e%2f%2e%2e',
    '-1',
    '0',
    '99999999999999999999',
    encodeURIComponent('\u202e\u{1f4a5}'),
    'x'.repeat(4096),
    'g'.repeat(64),
    'A'.repeat(64),
  ),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }).map(encodeURIComponent),
);

const base64url = (s: string) => Buffer.from(s, 'utf8').toString('base64url');

/** Cursor-like values: random base64, base64 of JSON of the wrong shape, NULs, huge. */
const hostileCursor = fc.oneof(
  fc.constantFrom(
    '',
    '%00',
    '!!!',
    'x'.repeat(8192),
    base64url('{}'),
    base64url('[]'),
    base64url('null'),
    base64url('{"createdAt":"not a date","id":"x"}'),
    base64url('{"createdAt":"2020-01-01T00:00:00Z","id":"\u0000"}'),
    base64url('["2020-01-01T00:00:00Z","00000000-0000-0000-0000-000000000000"]'),
    base64url('\u0000\u0000'),
    base64url('x'.repeat(300)),
  ),
  fc.string({ unit: 'binary', maxLength: 60 }).map(base64url),
  // Shaped like the ids cursors carry (36 of [0-9a-f-]) without being UUIDs.
  fc
    .oneof(
      fc.constantFrom('-'.repeat(36), '0'.repeat(36), 'ffffffff-ffff-ffff-ffff-fffffffffff-'),
      fc.string({ unit: fc.constantFrom(...'0123456789abcdef-'), minLength: 36, maxLength: 36 }),
    )
    .map(base64url),
  fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b).toString('base64url')),
);

const hostileQueryValue = fc.oneof(
  hostileSegment,
  fc.constantFrom('-1', '0', '1e999', '1.5', 'true', 'null', '', '%00', 'NaN', '-0'),
  hostileCursor.map(encodeURIComponent),
);

const hostileAuth: fc.Arbitrary<AuthChoice> = fc.oneof(
  fc.constant<AuthChoice>({ kind: 'none' }),
  fc.constantFrom<AuthChoice>(
    { kind: 'raw', header: 'Bearer' },
    { kind: 'raw', header: 'Bearer ' },
    { kind: 'raw', header: 'Basic YWRtaW46YWRtaW4=' },
    { kind: 'raw', header: 'Bearer abk_' },
    { kind: 'raw', header: `Bearer abk_${'0'.repeat(43)}` },
    { kind: 'raw', header: 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.' },
    { kind: 'raw', header: 'Bearer a.b.c' },
    { kind: 'raw', header: `Bearer ${'x'.repeat(8000)}` },
    { kind: 'raw', header: 'Bearer abk_\u00e9\u00e9' },
  ),
  fc
    .string({ unit: 'grapheme-ascii', maxLength: 80 })
    .map((s): AuthChoice => ({ kind: 'raw', header: `Bearer ${s}` })),
);

const WRONG_CONTENT_TYPES = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/xml',
  'application/json; charset=utf-16',
  'application/octet-stream',
];

/** Which fleet value a path parameter names (by the path segment before it). */
export function fleetValue(op: Operation, name: string, fleet: Fleet): string {
  if (name === 'hex') return fleet.blobHex;
  if (name === 'n') return '1';
  if (name === 'deltaId') return '00000000-0000-4000-8000-000000000000';
  const resource = op.path.split('/')[3];
  switch (resource) {
    case 'products':
      return fleet.productId;
    case 'releases':
      return fleet.releaseId;
    case 'devices':
      return op.path.endsWith('/decommission') ? fleet.spareDeviceId : fleet.deviceId;
    case 'rollouts':
      return fleet.rolloutId;
    case 'uploads':
      return fleet.uploadId;
    case 'provisioning-tokens':
      return fleet.tokenId;
    case 'api-keys':
      return fleet.spareApiKeyId;
    default:
      return '00000000-0000-4000-8000-000000000000';
  }
}

interface Parts {
  pathValues: Record<string, string>;
  query: [string, string][];
  headers: Record<string, string>;
  body: unknown;
}

function build(
  op: Operation,
  parts: Parts,
  auth: AuthChoice,
  mutation: string,
  rawBody?: string,
  contentType?: string | null,
): FuzzRequest {
  const path = op.path.replace(/\{(\w+)\}/g, (_m, name: string) => parts.pathValues[name] ?? 'x');
  const qs = parts.query.map(([k, v]) => `${encodeURIComponent(k)}=${v}`).join('&');
  const headers = { ...parts.headers };
  let body: string | undefined;
  if (op.body !== undefined || rawBody !== undefined) {
    body = rawBody ?? (op.body?.contentType === 'application/json' ? serialise(parts.body) : 'fuzz bytes');
    const type = contentType === undefined ? op.body?.contentType : contentType;
    if (type !== null && type !== undefined) headers['content-type'] = type;
  }
  return {
    method: op.method,
    url: qs === '' ? path : `${path}?${qs}`,
    auth,
    headers,
    ...(body === undefined ? {} : { body }),
    mutation,
  };
}

/**
 * Requests for one operation that each break one thing. `roles` are the API key roles the fleet
 * has a key for; each generated request may be sent with any of them (a refusal by role is one).
 */
export function requestsFor(
  op: Operation,
  fleet: Fleet,
  roles: readonly string[],
  maxBodyBytes: number,
): fc.Arbitrary<FuzzRequest> {
  const pathParams = op.params.filter((p) => p.in === 'path');
  const queryParams = op.params.filter((p) => p.in === 'query');
  const headerParams = op.params.filter((p) => p.in === 'header');
  const validParts: fc.Arbitrary<Parts> = fc.record({
    pathValues: fc.constant(
      Object.fromEntries(pathParams.map((p) => [p.name, fleetValue(op, p.name, fleet)])),
    ),
    query: fc
      .subarray(queryParams)
      .chain((ps) =>
        ps.length === 0
          ? fc.constant([] as [string, string][])
          : fc.tuple(
              ...ps.map((p) =>
                validValue(p.schema ?? {}).map((v): [string, string] => [
                  p.name,
                  encodeURIComponent(String(v)),
                ]),
              ),
            ),
      ),
    headers: fc.constant({} as Record<string, string>),
    body: op.body?.contentType === 'application/json' ? validValue(op.body.schema) : fc.constant(undefined),
  });
  const validAuth: fc.Arbitrary<AuthChoice> =
    op.security === 'none'
      ? fc.constant({ kind: 'none' })
      : op.security === 'device'
        ? fc.constant({ kind: 'device' })
        : fc.oneof(
            { weight: 3, arbitrary: fc.constant<AuthChoice>({ kind: 'valid' }) },
            fc.constantFrom(...roles).map((role): AuthChoice => ({ kind: 'role', role })),
            ...(op.security === 'deviceOrApiKey' ? [fc.constant<AuthChoice>({ kind: 'device' })] : []),
          );

  const mutations: fc.Arbitrary<FuzzRequest>[] = [];
  const hostile = hostileValue(maxBodyBytes);

  if (op.body?.contentType === 'application/json') {
    // A field (or the whole body) replaced by a hostile value.
    mutations.push(
      fc.tuple(validParts, validAuth, hostile, fc.nat()).map(([parts, auth, bad, pick]) => {
        const paths = leafPaths(parts.body);
        const at = paths[pick % paths.length] ?? [];
        return build(
          op,
          { ...parts, body: setAt(parts.body, at, bad.value) },
          auth,
          `body${at.map((k) => `.${k}`).join('')} := ${bad.label}`,
        );
      }),
    );
    // A field removed (a required one when the schema has one).
    mutations.push(
      fc.tuple(validParts, validAuth, fc.nat()).map(([parts, auth, pick]) => {
        const paths = leafPaths(parts.body).filter((p) => p.length > 0);
        const at = paths[pick % Math.max(paths.length, 1)];
        if (at === undefined) return build(op, parts, auth, 'body without any field', '');
        return build(op, { ...parts, body: deleteAt(parts.body, at) }, auth, `body without ${at.join('.')}`);
      }),
    );
    // Not JSON, or JSON under the wrong content type, or no content type.
    mutations.push(
      fc
        .tuple(
          validParts,
          validAuth,
          fc.oneof(
            fc.constantFrom(
              '',
              '{',
              '{"a":1,}',
              'null',
              '[]',
              '"x"',
              '\u0000',
              '{"a":"\u0000"}',
              '\ufeff{}',
              'NaN',
              '1e99999',
            ),
            fc.string({ unit: 'binary', maxLength: 60 }),
          ),
        )
        .map(([parts, auth, text]) =>
          build(op, parts, auth, `body text ${JSON.stringify(text.slice(0, 40))}`, text),
        ),
      fc
        .tuple(validParts, validAuth, fc.constantFrom<string | null>(null, ...WRONG_CONTENT_TYPES))
        .map(([parts, auth, type]) =>
          build(op, parts, auth, `content-type ${type ?? '(none)'}`, undefined, type),
        ),
    );
  } else if (op.method === 'POST' || op.method === 'PUT') {
    // Bodyless POSTs and the byte-streaming PUTs: a surprise JSON body, or bytes with a wrong type.
    mutations.push(
      fc
        .tuple(validParts, validAuth, hostile, fc.constantFrom('application/json', 'text/plain', null))
        .map(([parts, auth, bad, type]) =>
          build(
            op,
            parts,
            auth,
            `unexpected body ${bad.label} as ${type ?? '(none)'}`,
            serialise(bad.value),
            type,
          ),
        ),
    );
  }

  if (pathParams.length > 0) {
    mutations.push(
      fc
        .tuple(validParts, validAuth, fc.constantFrom(...pathParams.map((p) => p.name)), hostileSegment)
        .map(([parts, auth, name, value]) =>
          build(
            op,
            { ...parts, pathValues: { ...parts.pathValues, [name]: value } },
            auth,
            `path ${name} := ${value.slice(0, 60)}`,
          ),
        ),
    );
  }
  if (queryParams.length > 0) {
    mutations.push(
      fc
        .tuple(
          validParts,
          validAuth,
          fc.constantFrom(...queryParams.map((p) => p.name)),
          hostileQueryValue,
          fc.boolean(),
        )
        .map(([parts, auth, name, value, duplicate]) => {
          const query = parts.query.filter(([k]) => k !== name || duplicate);
          query.push([name, value]);
          return build(
            op,
            { ...parts, query },
            auth,
            `query ${name} := ${value.slice(0, 60)}${duplicate ? ' (duplicated)' : ''}`,
          );
        }),
      fc
        .tuple(validParts, validAuth, fc.constantFrom('cursor', 'limit'), hostileCursor)
        .map(([parts, auth, name, value]) =>
          build(
            op,
            { ...parts, query: [...parts.query, [name, encodeURIComponent(value)]] },
            auth,
            `query ${name} := cursor-like ${value.slice(0, 60)}`,
          ),
        ),
    );
  }
  if (headerParams.length > 0) {
    const headerValue = fc.oneof(
      fc.constantFrom(
        'bytes=',
        'bytes=-0',
        'bytes=5-1',
        'bytes=0-99999999999999999999',
        'bytes=-1,-1,-1',
        'bytes=a-b',
        'sha-256=:!!:',
        'sha-256=',
        'sha-256=:AAAA:',
        'x'.repeat(8000),
        'bytes=0-0,' + '1-1,'.repeat(500) + '2-2',
      ),
      fc.string({ unit: 'grapheme-ascii', maxLength: 40 }),
    );
    mutations.push(
      fc
        .tuple(validParts, validAuth, fc.constantFrom(...headerParams.map((p) => p.name)), headerValue)
        .map(([parts, auth, name, value]) =>
          build(
            op,
            { ...parts, headers: { ...parts.headers, [name]: value } },
            auth,
            `header ${name} := ${value.slice(0, 60)}`,
          ),
        ),
    );
  }
  if (op.security !== 'none') {
    const badDevice = fc
      .constantFrom('expired', 'audience', 'foreignKey', 'unknownDevice', 'replayed', 'longLived' as const)
      .map((variant): AuthChoice => ({ kind: 'deviceBad', variant }));
    const wrongAuth =
      op.security === 'device'
        ? fc.oneof(hostileAuth, badDevice, fc.constant<AuthChoice>({ kind: 'valid' }))
        : op.security === 'deviceOrApiKey'
          ? fc.oneof(hostileAuth, badDevice)
          : fc.oneof(hostileAuth, fc.constant<AuthChoice>({ kind: 'device' }));
    mutations.push(
      fc.tuple(validParts, wrongAuth).map(([parts, auth]) => ({
        ...build(op, parts, auth, `credentials ${JSON.stringify(auth).slice(0, 80)}`),
        mustRefuse: true as const,
      })),
    );
  }
  return fc.oneof(...mutations);
}
