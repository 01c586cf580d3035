import type { Logger } from 'pino';
import type { TableListener, TableUpdate } from '../control/controller.js';
import { jitteredBackoffDelay, type BackoffPolicy } from '../core/backoff.js';
import { FAILURE_CAUSES, type EventWriter, type FailureCause, type WriteOutcome } from './event-writer.js';
import { POD_STATE_CODES, rejectionEvent, reportableRejections, type RejectionReport } from './rejection-event.js';
import { TokenBucket } from './token-bucket.js';

// The events sink tells each pod's owners why it is not routed, off the routing path:
// the controller's listener only keeps a reference to the newest table; the work is done
// later, and writes go out through a token bucket with a few in flight at most. What is
// kept is bounded by the rejections of the current table: a rejection that resolves
// before its Event is written is forgotten, and one already reported is remembered only
// while it lasts (so one that goes away and comes back is reported again).

export interface EventSinkOptions {
  write: EventWriter;
  /** The router's name in its Events (its pod name). */
  reportingInstance: string;
  /** Writes per second on average, and at once after a quiet spell. */
  qps: number;
  burst: number;
  /** How long a pod-state rejection (not running, not ready, no IP) must last to be reported. */
  stateDelayMs: number;
  /** Writes waiting at most; more rejections wait until the queue drains. Default 10,000. */
  maxQueued?: number;
  /** Writes in flight at most. Default 4. */
  maxInFlight?: number;
  /** Wait before retrying after failures. Default 1 s doubling up to 5 min. */
  backoff?: BackoffPolicy;
  logger?: Logger;
}

export interface EventSinkStats {
  enabled: boolean;
  /** Why the sink is off, when it is. */
  off: string | null;
  /** Events created. */
  written: number;
  /** Creates answered 409: the Event was there already (another router, or an earlier run, wrote it). */
  alreadyReported: number;
  /** Failed writes, by cause. */
  failed: Record<FailureCause, number>;
  /** Rejections due for an Event that resolved before it could be written. */
  dropped: number;
  /** Writes waiting now (due, delayed, or backing off). */
  queued: number;
  /** Rejections left out of the queue because it was full; they are queued as it drains. */
  overflow: number;
  inFlight: number;
}

export interface EventSink {
  /** For `controller.subscribe`: returns at once. */
  readonly listener: TableListener;
  stats(): EventSinkStats;
  /** Resolves once nothing is due or in flight (delayed and backing-off writes may remain). */
  idle(): Promise<void>;
  /** Aborts the writes in flight and writes nothing more. */
  stop(): Promise<void>;
}

interface Item {
  report: RejectionReport;
  attempts: number;
  notBefore: number;
}

interface Pause {
  until: number;
  attempts: number;
}

/** A cause seen again within this long belongs to the same episode: it is not logged again. */
const LOG_EPISODE_MS = 10 * 60_000;
const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 1_000, maxMs: 5 * 60_000 };

function zeroCounts(): Record<FailureCause, number> {
  return Object.fromEntries(FAILURE_CAUSES.map((c) => [c, 0])) as Record<FailureCause, number>;
}

/** A sink that writes nothing, with the reason, for a router without an API server or with EVENTS=false. */
export function disabledEventSink(reason: string): EventSink {
  return {
    listener: () => {},
    stats: () => ({ enabled: false, off: reason, written: 0, alreadyReported: 0, failed: zeroCounts(), dropped: 0, queued: 0, overflow: 0, inFlight: 0 }),
    idle: () => Promise.resolve(),
    stop: () => Promise.resolve(),
  };
}

export function createEventSink(options: EventSinkOptions): EventSink {
  const { write, logger } = options;
  const maxQueued = options.maxQueued ?? 10_000;
  const maxInFlight = options.maxInFlight ?? 4;
  const backoff = options.backoff ?? DEFAULT_BACKOFF;
  const bucket = new TokenBucket(options.qps, options.burst, Date.now());
  const counts = { written: 0, alreadyReported: 0, dropped: 0, overflow: 0 };
  const failed = zeroCounts();

  let latest: TableUpdate | null = null;
  let reconcileScheduled = false;
  /** When each current rejection was first seen: the Event's eventTime. */
  const firstSeen = new Map<string, number>();
  /** The Event names of the current rejections, by identity, so that each is computed once. */
  let names = new Map<string, string>();
  /** Current rejections already reported (or refused for good): not written again while they last. */
  const done = new Set<string>();
  /** Due now, in arrival order. */
  const ready = new Map<string, Item>();
  /** Due later: delayed pod states, backoff, paused namespaces. */
  const waiting = new Map<string, Item>();
  let nextWaitingDue = Infinity;
  const inFlight = new Map<string, Promise<void>>();
  const aborts = new Set<AbortController>();
  const namespacePauses = new Map<string, Pause>();
  let globalPause: Pause = { until: 0, attempts: 0 };
  const causeLastSeen = new Map<FailureCause, number>();
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  let idleWaiters: Array<() => void> = [];

  function wait(item: Item): void {
    waiting.set(item.report.name, item);
    nextWaitingDue = Math.min(nextWaitingDue, item.notBefore);
  }

  function promoteDue(now: number): void {
    if (now < nextWaitingDue) return;
    nextWaitingDue = Infinity;
    for (const [name, item] of waiting) {
      if (item.notBefore <= now) {
        waiting.delete(name);
        ready.set(name, item);
      } else {
        nextWaitingDue = Math.min(nextWaitingDue, item.notBefore);
      }
    }
  }

  function reconcile(): void {
    reconcileScheduled = false;
    if (stopped || latest === null) return;
    const now = Date.now();
    const current = new Map<string, RejectionReport>();
    const nextNames = new Map<string, string>();
    for (const report of reportableRejections(latest.table, latest.pods, names)) {
      current.set(report.name, report);
      nextNames.set(report.identity, report.name);
    }
    names = nextNames;

    for (const name of firstSeen.keys()) if (!current.has(name)) firstSeen.delete(name);
    for (const name of done) if (!current.has(name)) done.delete(name);
    for (const queue of [ready, waiting]) {
      for (const [name, item] of queue) {
        if (current.has(name)) continue;
        queue.delete(name);
        // Not counted: a pod state that ended before its delay (a start-up, not a loss).
        if (item.attempts > 0 || item.notBefore <= now) counts.dropped++;
      }
    }

    counts.overflow = 0;
    for (const [name, report] of current) {
      const seen = firstSeen.get(name) ?? now;
      firstSeen.set(name, seen);
      const queued = ready.get(name) ?? waiting.get(name);
      if (queued !== undefined) {
        // Same rejection, perhaps a newer reason (another owner): write the newest.
        queued.report = report;
        continue;
      }
      if (done.has(name) || inFlight.has(name)) continue;
      if (ready.size + waiting.size >= maxQueued) {
        counts.overflow++;
        continue;
      }
      const item: Item = {
        report,
        attempts: 0,
        notBefore: POD_STATE_CODES.has(report.rejection.code) ? seen + options.stateDelayMs : now,
      };
      if (item.notBefore <= now) ready.set(name, item);
      else wait(item);
    }
    pump();
  }

  function scheduleReconcile(): void {
    if (reconcileScheduled || stopped) return;
    reconcileScheduled = true;
    setImmediate(reconcile);
  }

  function wakeAt(at: number): void {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (at === Infinity || stopped) return;
    timer = setTimeout(
      () => {
        timer = null;
        pump();
      },
      Math.max(1, at - Date.now()),
    );
  }

  function notifyIdleIfSo(): void {
    if (ready.size > 0 || inFlight.size > 0 || reconcileScheduled) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  function pump(): void {
    if (stopped) return;
    const now = Date.now();
    promoteDue(now);
    let wake = nextWaitingDue;
    while (inFlight.size < maxInFlight && ready.size > 0) {
      if (now < globalPause.until) {
        wake = Math.min(wake, globalPause.until);
        break;
      }
      const [name, item] = ready.entries().next().value as [string, Item];
      const pause = namespacePauses.get(item.report.rejection.namespace);
      if (pause !== undefined && pause.until > now) {
        ready.delete(name);
        item.notBefore = pause.until;
        wait(item);
        wake = Math.min(wake, item.notBefore);
        continue;
      }
      if (!bucket.tryTake(now)) {
        wake = Math.min(wake, now + bucket.msUntilToken(now));
        break;
      }
      ready.delete(name);
      send(item);
    }
    wakeAt(wake);
    notifyIdleIfSo();
  }

  function send(item: Item): void {
    const name = item.report.name;
    const abort = new AbortController();
    aborts.add(abort);
    const event = rejectionEvent(item.report, options.reportingInstance, firstSeen.get(name) ?? Date.now());
    const sent = write(event, abort.signal)
      .catch((err: unknown): WriteOutcome => ({ ok: false, cause: 'other', message: err instanceof Error ? err.message : String(err) }))
      .then((outcome) => {
        aborts.delete(abort);
        inFlight.delete(name);
        if (!stopped) settle(item, outcome);
      });
    inFlight.set(name, sent);
  }

  function logFailure(item: Item, outcome: Extract<WriteOutcome, { ok: false }>, retryInMs: number | null): void {
    const now = Date.now();
    const last = causeLastSeen.get(outcome.cause);
    causeLastSeen.set(outcome.cause, now);
    if (last !== undefined && now - last < LOG_EPISODE_MS) return;
    const { namespace, pod, code } = item.report.rejection;
    const fields = { cause: outcome.cause, namespace, pod, code, err: outcome.message, ...(retryInMs === null ? {} : { retryInMs }) };
    logger?.warn(
      fields,
      retryInMs === null
        ? 'the API server refused a Kubernetes Event and it is not retried; routing is not affected (further failures of this kind are counted, not logged)'
        : 'cannot write a Kubernetes Event; routing is not affected, the write is retried with backoff (further failures of this kind are counted, not logged)',
    );
  }

  function settle(item: Item, outcome: WriteOutcome): void {
    const name = item.report.name;
    const now = Date.now();
    const current = firstSeen.has(name);
    if (outcome.ok) {
      if (outcome.created) counts.written++;
      else counts.alreadyReported++;
      globalPause = { until: 0, attempts: 0 };
      namespacePauses.delete(item.report.rejection.namespace);
      if (current) done.add(name);
    } else {
      failed[outcome.cause]++;
      item.attempts++;
      if (outcome.cause === 'invalid' || outcome.cause === 'namespace_gone') {
        logFailure(item, outcome, null);
        if (current) done.add(name);
      } else {
        // A refusal in one namespace (RBAC, a webhook) pauses that namespace; anything
        // else (credentials, throttling, the server or the network) pauses every write.
        const namespace = item.report.rejection.namespace;
        const before = outcome.cause === 'forbidden' ? namespacePauses.get(namespace) : globalPause;
        const attempts = (before?.attempts ?? 0) + 1;
        const pause = { until: now + jitteredBackoffDelay(attempts, backoff), attempts };
        if (outcome.cause === 'forbidden') namespacePauses.set(namespace, pause);
        else globalPause = pause;
        logFailure(item, outcome, pause.until - now);
        if (!current) counts.dropped++;
        else if (ready.size + waiting.size >= maxQueued) counts.overflow++;
        else {
          item.notBefore = pause.until;
          wait(item);
        }
      }
    }
    // Room again: rejections left out of a full queue get their turn.
    if (counts.overflow > 0 && ready.size + waiting.size < maxQueued) scheduleReconcile();
    pump();
  }

  return {
    listener(update) {
      latest = update;
      scheduleReconcile();
    },
    stats: () => ({
      enabled: true,
      off: null,
      ...counts,
      failed: { ...failed },
      queued: ready.size + waiting.size,
      inFlight: inFlight.size,
    }),
    idle() {
      if (ready.size === 0 && inFlight.size === 0 && !reconcileScheduled) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
    async stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      for (const abort of aborts) abort.abort();
      await Promise.all(inFlight.values());
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const resolve of waiters) resolve();
    },
  };
}
