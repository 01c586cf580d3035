// Waiting longer after each failure: the one rule every retry in the router follows (nginx
// restarts and retried tables, the Kubernetes watches, Event writes). The wait doubles from
// `initialMs` up to `maxMs`, and starts over once the job works again.

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

/** A job waiting to run again: how many tries failed so far, and when (ms since the epoch). */
export interface Retry {
  attempt: number;
  nextAt: number;
}

/** The wait before try number `attempt` (1, 2, ...): `initialMs` doubled each time, at most `maxMs`. */
export function backoffDelay(attempt: number, policy: BackoffPolicy): number {
  return Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(30, Math.max(0, attempt - 1)));
}

/**
 * backoffDelay with "equal jitter" (a random point in its upper half), for clients of a
 * shared server: many routers restarted together do not hit a recovering API server in
 * step, and no retry is ever immediate.
 */
export function jitteredBackoffDelay(
  attempt: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  const ceiling = backoffDelay(attempt, policy);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** A timer that runs a job again after failures, each wait by backoffDelay; reset() starts over. */
export class BackoffTimer {
  private timer: NodeJS.Timeout | null = null;
  private attempt = 0;
  private next: Retry | null = null;
  private readonly policy: BackoffPolicy;

  constructor(initialMs: number, maxMs: number) {
    this.policy = { initialMs, maxMs };
  }

  /** The try waiting to run, or null. */
  pending(): Retry | null {
    return this.next && { ...this.next };
  }

  /** Runs `job` after the next delay, unless a try is waiting already; returns that try. */
  schedule(job: () => void): Retry {
    if (this.next !== null) return { ...this.next };
    this.attempt++;
    const delay = backoffDelay(this.attempt, this.policy);
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
