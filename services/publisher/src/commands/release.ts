// `abota release build|verify|inspect|add-delta`: signed releases and their deltas
// (docs/CONTRACTS.md "Release manifest", "Deltas end to end"). The work lives in ../release/;
// this module only maps flags to options and results to output.
import { ManifestError } from '@abota/manifest';
import { VerityError } from '@abota/verity';
import { startProgress, printJson } from '../output.js';
import { type AddDeltaSummary, addDeltas } from '../release/add-delta.js';
import { type BootFrom, buildRelease, type BuildSummary } from '../release/build.js';
import { BOOT_FORMATS } from '../image/uki-boot.js';
import { DEFAULT_UKI_STUB } from '../image/uki.js';
import { parseCodec } from '../release/codec.js';
import type { DeltaOutcome } from '../release/deltas-make.js';
import { ReleaseError } from '../release/errors.js';
import { formatInspectReport, humanSize, inspectRelease } from '../release/inspect.js';
import { verifyRelease, type VerifyReport } from '../release/verify.js';
import { parseDeltaQuality } from '../release/deltas-make.js';
import { passphraseFromEnv } from '../keys/store.js';

const MIB = 1024 * 1024;

interface BuildFlags {
  image: string;
  boot?: string;
  kernel?: string;
  kernelModules?: string;
  bootFormat?: string;
  ukiStub?: string;
  ukiConsole?: string;
  sbKey?: string;
  sbCert?: string;
  product: string;
  compatible: string[];
  version: string;
  securityVersion: string;
  expires: string;
  keys: string;
  out: string;
  passphraseEnv?: string;
  deltaFrom: string[];
  deltaQuality?: string;
  codec?: string;
  codecLevel?: string;
  json?: boolean;
}

interface AddDeltaFlags {
  from: string[];
  root?: string;
  deltaQuality?: string;
  json?: boolean;
}

interface VerifyFlags {
  root: string;
  now?: string;
  json?: boolean;
}

function parseNow(text: string | undefined): Date | undefined {
  if (text === undefined) return undefined;
  const at = new Date(text);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(text) || Number.isNaN(at.getTime())) {
    throw new ReleaseError(
      'ERR_RELEASE_USAGE',
      `--now ${JSON.stringify(text)}: expected an ISO timestamp like 2027-01-01T00:00:00Z`,
    );
  }
  return at;
}

/**
 * `release verify` exit statuses for scripts: 3 = the release is rejected (whatever check failed;
 * the code says which), 2 = bad command line, 1 = anything else (e.g. I/O). The original code
 * and message are kept.
 */
class VerifyRejection extends Error {
  readonly code: string;
  readonly exitCode = 3;
  constructor(err: Error & { code: string }) {
    super(err.message, { cause: err });
    this.code = err.code;
  }
}

function asVerifyFailure(err: unknown): unknown {
  if (!(err instanceof Error) || typeof (err as { code?: unknown }).code !== 'string') return err;
  const coded = err as Error & { code: string };
  if (coded.code === 'ERR_RELEASE_USAGE') return err;
  if (err instanceof ManifestError || err instanceof VerityError || err instanceof ReleaseError) {
    return new VerifyRejection(coded);
  }
  return err;
}

function bootFromFlags(flags: BuildFlags): BootFrom | undefined {
  const ukiOnly: [string | undefined, string][] = [
    [flags.ukiStub, '--uki-stub'],
    [flags.ukiConsole, '--uki-console'],
    [flags.sbKey, '--sb-key'],
    [flags.sbCert, '--sb-cert'],
  ];
  const format = flags.bootFormat ?? 'grub';
  if (!(BOOT_FORMATS as readonly string[]).includes(format)) {
    throw new ReleaseError(
      'ERR_RELEASE_USAGE',
      `--boot-format ${format}: expected ${BOOT_FORMATS.join(' or ')}`,
    );
  }
  if (format !== 'uki') {
    const given = ukiOnly.find(([v]) => v !== undefined);
    if (given !== undefined) {
      throw new ReleaseError('ERR_RELEASE_USAGE', `${given[1]} needs --boot-format uki`);
    }
  }
  if (flags.kernel === undefined && flags.kernelModules === undefined) {
    if (format === 'uki') {
      throw new ReleaseError('ERR_RELEASE_USAGE', '--boot-format uki needs --kernel and --kernel-modules');
    }
    return undefined;
  }
  if (flags.kernel === undefined || flags.kernelModules === undefined) {
    throw new ReleaseError(
      'ERR_RELEASE_USAGE',
      '--kernel and --kernel-modules go together (the initramfs needs the modules of that kernel)',
    );
  }
  if ((flags.sbKey === undefined) !== (flags.sbCert === undefined)) {
    throw new ReleaseError('ERR_RELEASE_USAGE', '--sb-key and --sb-cert go together (sbsign needs both)');
  }
  const base = { kernel: flags.kernel, modulesDir: flags.kernelModules };
  if (format !== 'uki') return base;
  return {
    ...base,
    format: 'uki',
    uki: {
      stub: flags.ukiStub ?? DEFAULT_UKI_STUB,
      console: flags.ukiConsole ?? 'console=ttyS0,115200',
      sign: flags.sbKey === undefined ? undefined : { key: flags.sbKey, cert: flags.sbCert! },
    },
  };
}

/** Two progress bars never share the terminal: the next one starts when the previous stops. */
class ProgressBars {
  private current: { label: string; bar: ReturnType<typeof startProgress> } | undefined;
  constructor(private readonly json: boolean) {}

  update(label: string, done: number, total: number): void {
    if (this.current?.label !== label) {
      this.current?.bar.stop();
      this.current = { label, bar: startProgress(label, Math.ceil(total / MIB), { json: this.json }) };
    }
    this.current.bar.update(Math.floor(done / MIB));
  }

  stop(): void {
    this.current?.bar.stop();
    this.current = undefined;
  }
}

/** Ctrl-C / SIGTERM abort `signal` while `run` is in progress; the handlers are removed after. */
async function withInterrupt<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const interrupt = new AbortController();
  const onSignal = (): void => interrupt.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await run(interrupt.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** One line per delta: what was made (or why not) and how it compares with the full artifact. */
function deltaLines(deltas: readonly DeltaOutcome[]): string[] {
  return deltas.map((d) => {
    const what = `  delta ${d.image} from ${d.sourceVersion}`;
    const size = `${humanSize(d.sizeBytes)} = ${(100 * d.ratioToArtifact).toFixed(1)} % of the full artifact (${humanSize(d.artifactSizeBytes)})`;
    if (d.status === 'skipped-not-smaller') {
      return `${what}: SKIPPED, ${size}: a delta not smaller than the artifact saves nothing`;
    }
    const verb = d.status === 'added' ? `made in ${d.durationMs} ms` : 'already listed';
    return `${what}: ${size}, ${verb}, ${d.digest}`;
  });
}

function printBuildSummary(s: BuildSummary): void {
  const lines = [
    `built release ${s.product} ${s.version} (security version ${s.securityVersion}) in ${s.outDir}`,
    `  expires ${s.expires}; signed by ${s.signedBy.length} release key(s) of root v${s.rootVersion}`,
    `  manifest ${s.manifestDigest}`,
  ];
  for (const [slot, img] of Object.entries(s.images)) {
    lines.push(
      `  ${slot}: ${humanSize(img.sizeBytes)} → ${img.artifact.codec} ${humanSize(img.artifact.sizeBytes)} (ratio ${img.compressionRatio}), root hash ${img.rootHash}`,
      `    verity ${img.durationsMs.verity} ms, compression ${img.durationsMs.compress} ms (in parallel), total ${img.durationsMs.total} ms`,
    );
  }
  if (s.ukiBootImage !== undefined) {
    const u = s.ukiBootImage;
    lines.push(
      `  boot: unified kernel image ${humanSize(u.ukiBytes)} (${u.signed ? 'signed' : 'unsigned'}; kernel ${u.kernelVersion}, initramfs ${humanSize(u.initramfsBytes)})`,
      `    command line: ${u.cmdline}`,
    );
  }
  lines.push(...deltaLines(s.deltas));
  lines.push(`  total ${s.durationsMs.total} ms`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

function printAddDeltaSummary(s: AddDeltaSummary): void {
  const lines = [
    `deltas of release ${s.product} ${s.version} in ${s.dir}: ${s.listed} listed in deltas.json`,
  ];
  lines.push(...deltaLines(s.deltas));
  lines.push(`  total ${s.durationsMs.total} ms`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

function printVerifyReport(r: VerifyReport): void {
  const lines = [
    `OK: release ${r.product} ${r.version} (security version ${r.securityVersion}) in ${r.dir}`,
    `  signed by ${r.signedBy.length} release key(s) of trust root v${r.rootVersion}; expires ${r.expires}`,
  ];
  for (const [slot, img] of Object.entries(r.images)) {
    lines.push(`  ${slot}: ${img.blocksVerified} blocks verified against root hash ${img.rootHash}`);
  }
  for (const d of r.deltas) {
    lines.push(
      `  delta ${d.image} from ${d.sourceVersion} (${d.sourceRootHash.slice(0, 16)}…): ${humanSize(d.sizeBytes)}, digest, header and target root hash checked`,
    );
  }
  lines.push(`  ${r.durationsMs.total} ms`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** `build` */
export async function build(flags: BuildFlags): Promise<void> {
  const json = flags.json === true;
  const deltaQuality = parseDeltaQuality(flags.deltaQuality);
  const codec = parseCodec(flags.codec, flags.codecLevel);
  const bars = new ProgressBars(json);
  let summary: BuildSummary;
  try {
    // Ctrl-C / SIGTERM: stop at the next chunk and remove the partial directory before exiting.
    summary = await withInterrupt((signal) =>
      buildRelease({
        signal,
        images: { rootfs: flags.image, boot: flags.boot },
        bootFrom: bootFromFlags(flags),
        product: flags.product,
        compatible: flags.compatible,
        version: flags.version,
        securityVersion: flags.securityVersion,
        expires: flags.expires,
        keysDir: flags.keys,
        outDir: flags.out,
        passphrase: passphraseFromEnv(flags.passphraseEnv),
        deltaFrom: flags.deltaFrom,
        ...(deltaQuality === undefined ? {} : { deltaQuality }),
        codec,
        onProgress: (done, total) => bars.update('release build (MiB)', done, total),
        onDeltaProgress: (done, total) => bars.update('release deltas (MiB)', done, total),
      }),
    );
  } finally {
    bars.stop();
  }
  if (json) printJson({ ok: true, ...summary });
  else printBuildSummary(summary);
}

/** `add-delta` */
export async function addDelta(dir: string, flags: AddDeltaFlags): Promise<void> {
  const json = flags.json === true;
  const bars = new ProgressBars(json);
  let summary: AddDeltaSummary;
  try {
    summary = await withInterrupt((signal) =>
      addDeltas({
        dir,
        from: flags.from,
        rootPath: flags.root,
        quality: flags.deltaQuality,
        signal,
        onProgress: (done, total) => bars.update('release deltas (MiB)', done, total),
      }),
    );
  } catch (err) {
    // The release's own verification failures exit 3 like `release verify`; a ReleaseError
    // keeps its status (2 for a wrong --from, 130 for Ctrl-C).
    throw err instanceof ReleaseError ? err : asVerifyFailure(err);
  } finally {
    bars.stop();
  }
  if (json) printJson({ ok: true, ...summary });
  else printAddDeltaSummary(summary);
}

/** `verify` */
export async function verify(dir: string, flags: VerifyFlags): Promise<void> {
  const json = flags.json === true;
  let bar: ReturnType<typeof startProgress> | undefined;
  let report: VerifyReport;
  try {
    const now = parseNow(flags.now);
    report = await verifyRelease({
      dir,
      rootPath: flags.root,
      ...(now === undefined ? {} : { now }),
      onProgress: (done, total) => {
        bar ??= startProgress('release verify (MiB)', Math.ceil(total / MIB), { json });
        bar.update(Math.floor(done / MIB));
      },
    });
  } catch (err) {
    throw asVerifyFailure(err);
  } finally {
    bar?.stop();
  }
  if (json) printJson({ ok: true, ...report });
  else printVerifyReport(report);
}

/** `inspect` */
export async function inspect(dir: string, flags: { json?: boolean }): Promise<void> {
  const report = await inspectRelease(dir);
  if (flags.json === true) printJson({ ok: true, ...report });
  else process.stdout.write(formatInspectReport(report));
}
