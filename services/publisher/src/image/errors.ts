// Failures of `abota image rootfs|disk` and of the boot image `release build` makes. Each code
// names one situation a person can act on; the CLI prints `code: message` and exits with
// `exitCode` (2 = fix the command line or the inputs, 1 = the machine, e.g. a missing tool).

export type ImageErrorCode =
  // Bad option values: unknown filesystem or format, a size that is not a number...
  | 'ERR_IMAGE_USAGE'
  // --out names something that already exists, or its directory does not.
  | 'ERR_IMAGE_OUT_EXISTS'
  // The source tree or tarball cannot be read.
  | 'ERR_IMAGE_SOURCE_UNREADABLE'
  // The tree has no init (/sbin/init or --init): it cannot be a root filesystem.
  | 'ERR_IMAGE_NOT_A_ROOTFS'
  // The content does not fit the size given (--size, or a partition of the disk layout).
  | 'ERR_IMAGE_TOO_SMALL'
  // A Debian tool the step needs is not installed (the message names the package).
  | 'ERR_IMAGE_TOOL_MISSING'
  // A tool ran and failed (its stderr is in the message).
  | 'ERR_IMAGE_TOOL_FAILED'
  // The kernel or its modules directory lacks what the initramfs needs (dm-verity, virtio...).
  | 'ERR_IMAGE_KERNEL_UNSUITABLE'
  // A release directory given to `image disk` is unusable (no boot image, unreadable, bad blob).
  | 'ERR_IMAGE_RELEASE_INVALID';

const EXIT_CODES: Partial<Record<ImageErrorCode, number>> = {
  ERR_IMAGE_USAGE: 2,
  ERR_IMAGE_OUT_EXISTS: 2,
  ERR_IMAGE_SOURCE_UNREADABLE: 2,
  ERR_IMAGE_NOT_A_ROOTFS: 2,
  ERR_IMAGE_TOO_SMALL: 2,
  ERR_IMAGE_KERNEL_UNSUITABLE: 2,
  ERR_IMAGE_RELEASE_INVALID: 2,
};

export class ImageError extends Error {
  override readonly name = 'ImageError';
  readonly code: ImageErrorCode;
  readonly exitCode: number;

  constructor(code: ImageErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.exitCode = EXIT_CODES[code] ?? 1;
  }
}
