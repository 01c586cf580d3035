// A timer that runs a job again after failures, waiting longer each time: the delay
// doubles from `initialMs` up to `maxMs`, and starts over after reset().

/** A job waiting to run again: how many tries failed so far, and when (ms since the epoch). */
export interface Retry {
  attempt: number;
  nextAt: number;
}

/** The delay before try number `attempt` (1, 2, ...). */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.min(30, Math.max(0, attempt - 1)));
}

export class BackoffTimer {
  private timer: NodeJS.Timeout | null = null;
  private attempt = 0;
  private next: Retry | null = null;

  constructor(
    private readonly initialMs: number,
    private readonly maxMs: number,
  ) {}

  /** The try waiting to run, or null. */
  pending(): Retry | null {
    return this.next && { ...this.next };
  }

  /** Runs `job` after the next delay, unless a try is waiting already; returns that try. */
  schedule(job: () => void): Retry {
    if (this.next !== null) return { ...this.next };
    this.attempt++;
    const delay = backoffDelay(this.attempt, this.initialMs, this.maxMs);
    this.next = { attempt: this.attempt, nextAt: Date.now() + delay };
    this.timer = setTimeout(() => {
      this.timer = null;
      this.next = null;
      job();
    }, delay);
    return { ...this.next };
  }

  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.next = null;
  }

  /** The next try waits the shortest delay again. */
  reset(): void {
    this.attempt = 0;
  }
}
