// The PATCH op's program (FORMAT.md "PATCH data"): a control stream of ADD / COPY commands and
// a literal stream, decoded into exactly one op's target span. COPY reads any source byte
// range, so shifted and partly changed content (compressed filesystems, relinked libraries)
// costs only the bytes that really differ — the xdelta/bsdiff idea on bounded target spans.
import { DeltaError } from './errors.js';

const TAG_ADD = 0;
const TAG_COPY = 1;

export type PatchCommand =
  | { kind: 'add'; bytes: Uint8Array }
  | { kind: 'copy'; sourceOffset: number; length: number };

class ByteSink {
  buf = new Uint8Array(1024);
  length = 0;
  private grow(extra: number): void {
    if (this.length + extra <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + extra) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
  varint(value: number): void {
    this.grow(10);
    let v = value;
    while (v >= 0x80) {
      this.buf[this.length++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.length++] = v;
  }
  bytes(data: Uint8Array): void {
    this.grow(data.length);
    this.buf.set(data, this.length);
    this.length += data.length;
  }
  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

/** Incremental builder used by the differ: ADDs and COPYs in target order. */
export class PatchBuilder {
  private readonly controls = new ByteSink();
  private readonly literals = new ByteSink();
  private lastSourceEnd: number;
  private pendingAdd = 0;
  copies = 0;
  literalBytes = 0;

  /** `baseOffset` = the op's first target byte; COPY offsets are coded relative to it at first. */
  constructor(baseOffset: number) {
    this.lastSourceEnd = baseOffset;
  }

  add(data: Uint8Array): void {
    if (data.length === 0) return;
    this.literals.bytes(data);
    this.pendingAdd += data.length;
    this.literalBytes += data.length;
  }

  copy(sourceOffset: number, length: number): void {
    this.flushAdd();
    const delta = sourceOffset - this.lastSourceEnd;
    this.controls.varint(length * 2 + TAG_COPY);
    this.controls.varint(delta >= 0 ? delta * 2 : -delta * 2 - 1);
    this.lastSourceEnd = sourceOffset + length;
    this.copies++;
  }

  private flushAdd(): void {
    if (this.pendingAdd === 0) return;
    this.controls.varint(this.pendingAdd * 2 + TAG_ADD);
    this.pendingAdd = 0;
  }

  /** Upper bound of `finish()`'s length. */
  encodedSizeBound(): number {
    return this.controls.length + this.literals.length + 20;
  }

  /** The decoded PATCH data: varint(control length) ‖ controls ‖ literals. */
  finish(): Uint8Array {
    this.flushAdd();
    const out = new ByteSink();
    out.varint(this.controls.length);
    out.bytes(this.controls.view());
    out.bytes(this.literals.view());
    return out.view().slice();
  }
}

class ByteSource {
  pos: number;
  constructor(
    private readonly bytes: Uint8Array,
    start: number,
    private readonly end: number,
    private readonly where: string,
  ) {
    this.pos = start;
  }
  get done(): boolean {
    return this.pos >= this.end;
  }
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.end) throw invalid(this.where, `a varint runs past the control stream`);
      const b = this.bytes[this.pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 0x80;
    }
    throw invalid(this.where, `a varint is longer than 8 bytes`);
  }
}

function invalid(where: string, why: string): DeltaError {
  return new DeltaError('ERR_DELTA_OP_INVALID', `${where}: PATCH program is invalid: ${why}`);
}

/**
 * Decode and check a PATCH program against the op's span before anything is read or
 * written: commands must produce exactly `targetLength` bytes, copies stay inside the source,
 * literals are used up exactly.
 */
export function decodePatch(
  decoded: Uint8Array,
  opts: { baseOffset: number; targetLength: number; sourceSizeBytes: number; where: string },
): PatchCommand[] {
  const head = new ByteSource(decoded, 0, decoded.length, opts.where);
  const controlLength = head.varint();
  const controlStart = head.pos;
  if (controlLength > decoded.length - controlStart) {
    throw invalid(
      opts.where,
      `control stream length ${controlLength} exceeds the ${decoded.length - controlStart} bytes left`,
    );
  }
  const controls = new ByteSource(decoded, controlStart, controlStart + controlLength, opts.where);
  let literalPos = controlStart + controlLength;
  let produced = 0;
  let lastSourceEnd = opts.baseOffset;
  const commands: PatchCommand[] = [];
  while (!controls.done) {
    const word = controls.varint();
    const length = Math.floor(word / 2);
    if (length === 0 || length > opts.targetLength - produced) {
      throw invalid(
        opts.where,
        `a command of ${length} bytes at output byte ${produced} overruns the ${opts.targetLength}-byte span`,
      );
    }
    if (word % 2 === TAG_ADD) {
      if (length > decoded.length - literalPos) {
        throw invalid(
          opts.where,
          `ADD of ${length} bytes needs more literals than the ${decoded.length - literalPos} left`,
        );
      }
      commands.push({ kind: 'add', bytes: decoded.subarray(literalPos, literalPos + length) });
      literalPos += length;
    } else {
      const zz = controls.varint();
      const delta = zz % 2 === 0 ? zz / 2 : -(zz + 1) / 2;
      const sourceOffset = lastSourceEnd + delta;
      if (sourceOffset < 0 || sourceOffset + length > opts.sourceSizeBytes) {
        throw invalid(
          opts.where,
          `COPY of source bytes ${sourceOffset}+${length} is outside the ${opts.sourceSizeBytes}-byte source`,
        );
      }
      commands.push({ kind: 'copy', sourceOffset, length });
      lastSourceEnd = sourceOffset + length;
    }
    produced += length;
  }
  if (produced !== opts.targetLength) {
    throw invalid(opts.where, `commands produce ${produced} bytes, the op spans ${opts.targetLength}`);
  }
  if (literalPos !== decoded.length) {
    throw invalid(opts.where, `${decoded.length - literalPos} literal bytes are left unused`);
  }
  return commands;
}
