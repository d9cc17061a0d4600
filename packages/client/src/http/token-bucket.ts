// Bandwidth limit for downloads: a token bucket refilled at `rateBytesPerSecond` holding at most
// `burstBytes`, so the long-run rate is bounded while small bursts pass without waiting.
import { sleep } from './backoff.js';

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly rateBytesPerSecond: number,
    readonly burstBytes: number = Math.max(16_384, Math.floor(rateBytesPerSecond / 4)),
    private readonly now: () => number = () => performance.now(),
    private readonly wait: (ms: number, signal?: AbortSignal) => Promise<void> = sleep,
  ) {
    this.tokens = burstBytes;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burstBytes, this.tokens + ((t - this.last) / 1000) * this.rateBytesPerSecond);
    this.last = t;
  }

  /** Wait until `bytes` may pass. Larger than the burst is allowed; it goes into debt and waits it off. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    this.refill();
    this.tokens -= bytes;
    if (this.tokens < 0) {
      await this.wait(Math.ceil((-this.tokens / this.rateBytesPerSecond) * 1000), signal);
      this.refill();
    }
  }
}
