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

export interface PatchBounds {
  /** The op's first target byte (the first COPY's offset is coded relative to it). */
  baseOffset: number;
  targetLength: number;
  sourceSizeBytes: number;
  where: string;
}

/**
 * Reads a PATCH program one command at a time into its own fields (no object per command: a
 * program may hold hundreds of thousands of short copies, and the applier's heap is small).
 * Every command is checked as it is read: it stays inside the span and the source, and ADDs
 * do not run past the literals; `next()` returning false means the program ended exactly.
 */
export class PatchCursor {
  kind: 'add' | 'copy' = 'add';
  length = 0;
  /** COPY: the source byte offset. */
  sourceOffset = 0;
  /** ADD: offset of the literal bytes in the decoded data. */
  literalOffset = 0;
  private readonly controls: ByteSource;
  private literalPos: number;
  private produced = 0;
  private lastSourceEnd: number;

  constructor(
    private readonly decoded: Uint8Array,
    private readonly bounds: PatchBounds,
  ) {
    const head = new ByteSource(decoded, 0, decoded.length, bounds.where);
    const controlLength = head.varint();
    const controlStart = head.pos;
    if (controlLength > decoded.length - controlStart) {
      throw invalid(
        bounds.where,
        `control stream length ${controlLength} exceeds the ${decoded.length - controlStart} bytes left`,
      );
    }
    this.controls = new ByteSource(decoded, controlStart, controlStart + controlLength, bounds.where);
    this.literalPos = controlStart + controlLength;
    this.lastSourceEnd = bounds.baseOffset;
  }

  next(): boolean {
    const { where, targetLength, sourceSizeBytes } = this.bounds;
    if (this.controls.done) {
      if (this.produced !== targetLength) {
        throw invalid(where, `commands produce ${this.produced} bytes, the op spans ${targetLength}`);
      }
      if (this.literalPos !== this.decoded.length) {
        throw invalid(where, `${this.decoded.length - this.literalPos} literal bytes are left unused`);
      }
      return false;
    }
    const word = this.controls.varint();
    const length = Math.floor(word / 2);
    if (length === 0 || length > targetLength - this.produced) {
      throw invalid(
        where,
        `a command of ${length} bytes at output byte ${this.produced} overruns the ${targetLength}-byte span`,
      );
    }
    if (word % 2 === TAG_ADD) {
      if (length > this.decoded.length - this.literalPos) {
        throw invalid(
          where,
          `ADD of ${length} bytes needs more literals than the ${this.decoded.length - this.literalPos} left`,
        );
      }
      this.kind = 'add';
      this.literalOffset = this.literalPos;
      this.literalPos += length;
    } else {
      const zz = this.controls.varint();
      const delta = zz % 2 === 0 ? zz / 2 : -(zz + 1) / 2;
      const sourceOffset = this.lastSourceEnd + delta;
      if (sourceOffset < 0 || sourceOffset + length > sourceSizeBytes) {
        throw invalid(
          where,
          `COPY of source bytes ${sourceOffset}+${length} is outside the ${sourceSizeBytes}-byte source`,
        );
      }
      this.kind = 'copy';
      this.sourceOffset = sourceOffset;
      this.lastSourceEnd = sourceOffset + length;
    }
    this.length = length;
    this.produced += length;
    return true;
  }
}

/**
 * Check a whole PATCH program against the op's span before anything is read or written:
 * commands must produce exactly `targetLength` bytes, copies stay inside the source, literals
 * are used up exactly.
 */
export function checkPatch(decoded: Uint8Array, bounds: PatchBounds): void {
  const cursor = new PatchCursor(decoded, bounds);
  while (cursor.next()) {}
}

/** The commands as objects (tests and tools; the applier walks a PatchCursor instead). */
export function decodePatch(decoded: Uint8Array, bounds: PatchBounds): PatchCommand[] {
  const cursor = new PatchCursor(decoded, bounds);
  const commands: PatchCommand[] = [];
  while (cursor.next()) {
    commands.push(
      cursor.kind === 'add'
        ? { kind: 'add', bytes: decoded.subarray(cursor.literalOffset, cursor.literalOffset + cursor.length) }
        : { kind: 'copy', sourceOffset: cursor.sourceOffset, length: cursor.length },
    );
  }
  return commands;
}
