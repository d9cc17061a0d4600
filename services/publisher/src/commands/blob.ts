// Blobs in the server's store (artifacts, hash trees, deltas; content-addressed by SHA-256):
// `blob list`, `blob show` (is it there, how large), `blob delete` (only when no release
// references it; the server refuses otherwise with ERR_BLOB_IN_USE) and `blob gc`, which deletes
// every blob no release references that was stored before a grace period (a push in progress
// has uploaded blobs that its manifest does not reference yet).
import type { BlobListItemSchema } from '@abota/api';
import { printJson } from '../output.js';
import {
  type AdminConnection,
  type ApiSchemas,
  connectFromEnvironment,
  readJson,
  type ServerFlags,
} from '../server-api/client.js';
import { AdminApiError } from '../server-api/error.js';
import { parseDurationSeconds } from '../duration.js';
import { formatTable, parsePositiveInt, usage } from './server-flags.js';

/** "sha256:<hex>" or "<hex>" → the 64 lower-case hex digits the blob routes take. */
export function blobHex(text: string): string {
  const hex = text.startsWith('sha256:') ? text.slice('sha256:'.length) : text;
  if (!/^[0-9a-f]{64}$/.test(hex))
    throw usage(`blob ${JSON.stringify(text)}: expected sha256:<64 lower-case hex>`);
  return hex;
}

const BlobPage = (s: ApiSchemas) => s.pageOf(s.BlobListItemSchema);
type BlobListItem = ReturnType<typeof BlobListItemSchema.parse>;
/** At most this many pages of 1000 in one `blob gc`. */
const GC_MAX_PAGES = 100;

interface GcReport {
  dryRun: boolean;
  createdBefore: string;
  deleted: BlobListItem[];
  /** Referenced by a release between the listing and the delete: kept. */
  kept: BlobListItem[];
  deletedBytes: number;
}

/** Every blob no release references, stored before `createdBefore`, deleted (or only listed). */
async function collectGarbage(
  conn: AdminConnection,
  createdBefore: Date,
  dryRun: boolean,
): Promise<GcReport> {
  const report: GcReport = {
    dryRun,
    createdBefore: createdBefore.toISOString(),
    deleted: [],
    kept: [],
    deletedBytes: 0,
  };
  let cursor: string | null = null;
  for (let n = 0; n < GC_MAX_PAGES; n++) {
    const query = {
      unreferenced: 'true' as const,
      createdBefore: report.createdBefore,
      limit: '1000',
      ...(cursor === null ? {} : { cursor }),
    };
    const page: ReturnType<ReturnType<typeof BlobPage>['parse']> = await readJson(
      await conn.api().v1.admin.blobs.$get({ query }),
      BlobPage,
    );
    for (const blob of page.items) {
      if (!dryRun) {
        const hex = blobHex(blob.digest);
        try {
          await readJson(
            await conn.api().v1.admin.blobs.sha256[':hex'].$delete({ param: { hex } }),
            (s) => s.BlobInfoSchema,
          );
        } catch (err) {
          if (err instanceof AdminApiError && err.code === 'ERR_BLOB_IN_USE') {
            report.kept.push(blob);
            continue;
          }
          // Deleted meanwhile by someone else: the goal is reached.
          if (!(err instanceof AdminApiError && err.status === 404)) throw err;
        }
      }
      report.deleted.push(blob);
      report.deletedBytes += blob.sizeBytes;
    }
    cursor = page.nextCursor;
    if (cursor === null) break;
  }
  return report;
}

/** `show` */
export async function show(digest: string, flags: ServerFlags): Promise<void> {
  const hex = blobHex(digest);
  const api = connectFromEnvironment(flags).api();
  const info = await readJson(
    await api.v1.admin.blobs.sha256[':hex'].$get({ param: { hex } }),
    (s) => s.BlobInfoSchema,
  );
  if (flags.json === true) return printJson({ ok: true, blob: info });
  process.stdout.write(`${info.digest} ${info.sizeBytes} bytes\n`);
}

/** `delete` */
export async function deleteBlob(digest: string, flags: ServerFlags): Promise<void> {
  const hex = blobHex(digest);
  const api = connectFromEnvironment(flags).api();
  const info = await readJson(
    await api.v1.admin.blobs.sha256[':hex'].$delete({ param: { hex } }),
    (s) => s.BlobInfoSchema,
  );
  if (flags.json === true) return printJson({ ok: true, blob: info });
  process.stdout.write(`deleted ${info.digest} (${info.sizeBytes} bytes)\n`);
}

/** `list` */
export async function list(
  flags: ServerFlags & { unreferenced?: boolean; limit: string; cursor?: string },
): Promise<void> {
  const limit = parsePositiveInt('--limit', flags.limit, 1000) ?? 100;
  const api = connectFromEnvironment(flags).api();
  const query = {
    limit: String(limit),
    ...(flags.unreferenced === true ? { unreferenced: 'true' as const } : {}),
    ...(flags.cursor === undefined ? {} : { cursor: flags.cursor }),
  };
  const page = await readJson(await api.v1.admin.blobs.$get({ query }), BlobPage);
  if (flags.json === true) return printJson({ ok: true, ...page });
  if (page.items.length === 0) return void process.stdout.write('no blobs\n');
  process.stdout.write(
    formatTable(
      ['DIGEST', 'SIZE', 'STORED', 'REFERENCED'],
      page.items.map((b) => [b.digest, String(b.sizeBytes), b.createdAt, b.referenced ? 'yes' : 'no']),
    ),
  );
  if (page.nextCursor !== null) process.stderr.write(`more: abota blob list --cursor ${page.nextCursor}\n`);
}

/** `gc` */
export async function gc(flags: ServerFlags & { olderThan: string; dryRun?: boolean }): Promise<void> {
  const graceSeconds = parseDurationSeconds('--older-than', flags.olderThan);
  const conn = connectFromEnvironment(flags);
  const report = await collectGarbage(
    conn,
    new Date(Date.now() - graceSeconds * 1000),
    flags.dryRun === true,
  );
  if (flags.json === true) return printJson({ ok: true, ...report });
  const verb = report.dryRun ? 'would delete' : 'deleted';
  process.stdout.write(
    `${verb} ${report.deleted.length} blob(s), ${report.deletedBytes} bytes, that no release references and were stored before ${report.createdBefore}\n`,
  );
  for (const b of report.deleted) process.stdout.write(`  ${b.digest} ${b.sizeBytes}\n`);
  if (report.kept.length > 0)
    process.stdout.write(`kept ${report.kept.length} blob(s) a release referenced meanwhile\n`);
}
