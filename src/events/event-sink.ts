import type { Logger } from 'pino';
import type { TableListener, TableUpdate } from '../control/controller.js';
import { jitteredBackoffDelay, type BackoffPolicy } from '../core/backoff.js';
import type { EventWriter, WriteOutcome } from './event-writer.js';
import type { RouteRejectedEvent } from './rejection-event.js';
import {
  countsOf,
  initialSinkState,
  isIdle,
  snapshot,
  zeroSinkCounts,
  type SinkCounts,
  type SinkSnapshot,
} from './sink-state.js';
import { step, type SinkEffect, type SinkInput } from './sink-step.js';

// The events sink tells each pod's owners why it is not routed, off the routing path:
// the controller's listener only keeps a reference to the newest table; the work is done
// later, and writes go out through a token bucket with a few in flight at most. What is
// kept is bounded by the rejections of the current table: a rejection that resolves
// before its Event is written is forgotten, and one already reported is remembered only
// while it lasts (so one that goes away and comes back is reported again).
//
// This module is the edge: the clock, the timer, the writes and the log. What the sink
// knows is a state (sink-state.ts) that one transition function (sink-step.ts) changes.

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

export interface EventSinkStats extends SinkCounts {
  enabled: boolean;
  /** Why the sink is off, when it is. */
  off: string | null;
}

export type EventSinkSnapshot = SinkSnapshot;

export interface EventSink {
  /** For `controller.subscribe`: returns at once. */
  readonly listener: TableListener;
  stats(): EventSinkStats;
  /** Every tracked rejection with its state, the pauses and the counters, as plain data. */
  snapshot(): EventSinkSnapshot;
  /** Resolves once nothing is due or in flight (delayed and backing-off writes may remain). */
  idle(): Promise<void>;
  /** Aborts the writes in flight and writes nothing more. */
  stop(): Promise<void>;
}

const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 1_000, maxMs: 5 * 60_000 };

/** The wait before retrying after `attempts` failures in a row: the sink's one use of a backoff function. */
function retryDelay(policy: BackoffPolicy): (attempts: number) => number {
  return (attempts) => jitteredBackoffDelay(attempts, policy);
}

function emptySnapshot(): EventSinkSnapshot {
  return { stopped: false, ...zeroSinkCounts(), rejections: [], pauseAll: null, namespacePauses: {} };
}

/** A sink that writes nothing, with the reason, for a router without an API server or with EVENTS=false. */
export function disabledEventSink(reason: string): EventSink {
  return {
    listener: () => {},
    stats: () => ({ enabled: false, off: reason, ...zeroSinkCounts() }),
    snapshot: emptySnapshot,
    idle: () => Promise.resolve(),
    stop: () => Promise.resolve(),
  };
}

export function createEventSink(options: EventSinkOptions): EventSink {
  const state = initialSinkState(
    {
      reportingInstance: options.reportingInstance,
      stateDelayMs: options.stateDelayMs,
      maxQueued: options.maxQueued ?? 10_000,
      maxInFlight: options.maxInFlight ?? 4,
      qps: options.qps,
      burst: options.burst,
      retryDelayMs: retryDelay(options.backoff ?? DEFAULT_BACKOFF),
    },
    Date.now(),
  );
  const alarm = new Alarm(() => run({ type: 'tick', now: Date.now() }));
  const writes = new Writes(options.write, (name, outcome) => run({ type: 'written', now: Date.now(), name, outcome }));
  const idleWaiters = new Waiters();
  let latest: TableUpdate | null = null;
  let reconcileScheduled = false;

  function run(input: SinkInput): void {
    for (const effect of step(state, input)) perform(effect);
    // Once stopped, `stop` answers the waiters when the aborted writes have ended.
    if (!state.stopped && isIdle(state) && !reconcileScheduled) idleWaiters.release();
  }

  function perform(effect: SinkEffect): void {
    switch (effect.type) {
      case 'write':
        writes.start(effect.name, effect.event);
        return;
      case 'wakeAt':
        alarm.set(effect.at);
        return;
      case 'warn':
        options.logger?.warn(effect.fields, effect.message);
        return;
      case 'abortWrites':
        writes.abortAll();
        return;
    }
  }

  function reconcile(): void {
    reconcileScheduled = false;
    if (latest !== null) run({ type: 'table', now: Date.now(), table: latest.table, pods: latest.pods });
  }

  return {
    listener(update) {
      latest = update;
      if (reconcileScheduled || state.stopped) return;
      reconcileScheduled = true;
      setImmediate(reconcile);
    },
    stats: () => ({ enabled: true, off: null, ...countsOf(state) }),
    snapshot: () => snapshot(state),
    idle() {
      // Stopped, nothing more will be written.
      if (state.stopped || (isIdle(state) && !reconcileScheduled)) return Promise.resolve();
      return idleWaiters.add();
    },
    async stop() {
      run({ type: 'stop' });
      await writes.settled();
      idleWaiters.release();
    },
  };
}

/** One timer, set to the time the sink asks for. */
class Alarm {
  private timer: NodeJS.Timeout | null = null;
  private at = Infinity;

  constructor(private readonly ring: () => void) {}

  set(at: number): void {
    if (at === this.at && this.timer !== null) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.at = at;
    if (at === Infinity) return;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.ring();
      },
      Math.max(1, at - Date.now()),
    );
  }
}

/** The writes in flight, each abortable; every outcome is reported, a thrown error as cause `other`. */
class Writes {
  private readonly inFlight = new Map<AbortController, Promise<void>>();

  constructor(
    private readonly write: EventWriter,
    private readonly ended: (name: string, outcome: WriteOutcome) => void,
  ) {}

  start(name: string, event: RouteRejectedEvent): void {
    const abort = new AbortController();
    // The executor runs at once: the write starts now, and a writer that throws is a failed write.
    const done = new Promise<WriteOutcome>((resolve) => resolve(this.write(event, abort.signal)))
      .catch((err: unknown): WriteOutcome => {
        return { ok: false, cause: 'other', message: err instanceof Error ? err.message : String(err) };
      })
      .then((outcome) => {
        this.inFlight.delete(abort);
        this.ended(name, outcome);
      });
    this.inFlight.set(abort, done);
  }

  abortAll(): void {
    for (const abort of this.inFlight.keys()) abort.abort();
  }

  async settled(): Promise<void> {
    await Promise.all(this.inFlight.values());
  }
}

/** Callers of `idle()` waiting for it. */
class Waiters {
  private waiting: Array<() => void> = [];

  add(): Promise<void> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const resolve of waiting) resolve();
  }
}
