import { FAILURE_CAUSES, type FailureCause } from './event-writer.js';
import type { RejectionReport } from './rejection-event.js';
import { TokenBucket } from './token-bucket.js';

// What the events sink knows, as data: each current rejection in one named state, the
// pauses the API server's refusals put on writes, and the counters. Only the transition
// function (sink-step.ts) changes it; the indexes below are kept by `moveTo` and `forget`
// alone, so a state and the collection that holds it cannot disagree.

/** Where one rejection's Event stands. */
export type Phase =
  /** A pod state (not running, not ready, no IP) waiting to have lasted the state delay. */
  | { state: 'delayed'; until: number }
  /** Due for a write: waits for a token, a free write slot, or the end of a pause on every write. */
  | { state: 'due' }
  /** Its write is in flight; `resolved` when the rejection went away meanwhile. */
  | { state: 'writing'; resolved: boolean }
  /** Came to its turn while its namespace is paused (after a 403 there): waits for the pause to end. */
  | { state: 'paused'; until: number }
  /** Its own write failed and may be retried: waits for the pause that failure began or lengthened. */
  | { state: 'backingOff'; until: number }
  /** Left out of a full queue: queued, in order, as the queue drains. */
  | { state: 'waitingForRoom' }
  /** Written, found there already (409), or refused for good: not written again while it lasts. */
  | { state: 'reported' };

export type StateName = Phase['state'];

export interface Entry {
  report: RejectionReport;
  /** When the rejection was first seen in a table: the Event's eventTime. */
  firstSeen: number;
  /** Failed writes of this Event so far. */
  attempts: number;
  phase: Phase;
}

/** A pause on writes after refusals: `attempts` failures in a row began it. */
export interface Pause {
  until: number;
  attempts: number;
  cause: FailureCause;
}

/** What the sink is given and never changes. */
export interface SinkRules {
  /** The router's name in its Events. */
  reportingInstance: string;
  stateDelayMs: number;
  maxQueued: number;
  maxInFlight: number;
  qps: number;
  burst: number;
  /** The wait before retrying after `attempts` failures in a row. */
  retryDelayMs: (attempts: number) => number;
}

export interface SinkCounts {
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

export interface SinkState {
  readonly rules: SinkRules;
  stopped: boolean;
  /** Every rejection of the newest table, and writes in flight for ones that resolved, by Event name. */
  readonly entries: Map<string, Entry>;
  /** The Event names of the current rejections by identity, so that each digest is computed once. */
  names: Map<string, string>;
  /** Index: the due entries, in the order they became due. */
  readonly due: Map<string, Entry>;
  /** Index: the delayed, paused and backing-off entries. */
  readonly waiting: Map<string, Entry>;
  /** No waiting entry is due before this (it may be earlier than the earliest: it is a bound). */
  nextWaitingDue: number;
  /** Index: the entries waiting for room, in arrival order. */
  readonly waitingForRoom: Map<string, Entry>;
  writing: number;
  /** A pause on every write (401, 429, 5xx, timeouts, no connection), or null. */
  pauseAll: Pause | null;
  /** Pauses of single namespaces (403). */
  readonly namespacePauses: Map<string, Pause>;
  readonly bucket: TokenBucket;
  /** When each failure cause was last seen, for logging each episode once. */
  readonly causeLastSeen: Map<FailureCause, number>;
  readonly counts: { written: number; alreadyReported: number; dropped: number; failed: Record<FailureCause, number> };
}

export function zeroCounts(): Record<FailureCause, number> {
  return Object.fromEntries(FAILURE_CAUSES.map((c) => [c, 0])) as Record<FailureCause, number>;
}

export function zeroSinkCounts(): SinkCounts {
  return { written: 0, alreadyReported: 0, failed: zeroCounts(), dropped: 0, queued: 0, overflow: 0, inFlight: 0 };
}

export function initialSinkState(rules: SinkRules, now: number): SinkState {
  return {
    rules,
    stopped: false,
    entries: new Map(),
    names: new Map(),
    due: new Map(),
    waiting: new Map(),
    nextWaitingDue: Infinity,
    waitingForRoom: new Map(),
    writing: 0,
    pauseAll: null,
    namespacePauses: new Map(),
    bucket: new TokenBucket(rules.qps, rules.burst, now),
    causeLastSeen: new Map(),
    counts: { written: 0, alreadyReported: 0, dropped: 0, failed: zeroCounts() },
  };
}

function leaveIndex(s: SinkState, name: string, phase: Phase): void {
  switch (phase.state) {
    case 'due':
      s.due.delete(name);
      break;
    case 'delayed':
    case 'paused':
    case 'backingOff':
      s.waiting.delete(name);
      if (s.waiting.size === 0) s.nextWaitingDue = Infinity;
      break;
    case 'waitingForRoom':
      s.waitingForRoom.delete(name);
      break;
    case 'writing':
      s.writing--;
      break;
    case 'reported':
      break;
  }
}

function joinIndex(s: SinkState, name: string, entry: Entry): void {
  const { phase } = entry;
  switch (phase.state) {
    case 'due':
      s.due.set(name, entry);
      break;
    case 'delayed':
    case 'paused':
    case 'backingOff':
      s.waiting.set(name, entry);
      s.nextWaitingDue = Math.min(s.nextWaitingDue, phase.until);
      break;
    case 'waitingForRoom':
      s.waitingForRoom.set(name, entry);
      break;
    case 'writing':
      s.writing++;
      break;
    case 'reported':
      break;
  }
}

/** Starts tracking a rejection, in `phase`. */
export function track(s: SinkState, entry: Entry): void {
  s.entries.set(entry.report.name, entry);
  joinIndex(s, entry.report.name, entry);
}

export function moveTo(s: SinkState, entry: Entry, phase: Phase): void {
  leaveIndex(s, entry.report.name, entry.phase);
  entry.phase = phase;
  joinIndex(s, entry.report.name, entry);
}

export function forget(s: SinkState, entry: Entry): void {
  leaveIndex(s, entry.report.name, entry.phase);
  s.entries.delete(entry.report.name);
}

/** Writes waiting for their turn: what the queue bound counts. */
export function queuedCount(s: SinkState): number {
  return s.due.size + s.waiting.size;
}

/** Nothing due and nothing in flight (delayed, paused and backing-off writes may remain). */
export function isIdle(s: SinkState): boolean {
  return s.due.size === 0 && s.writing === 0;
}

export function countsOf(s: SinkState): SinkCounts {
  return {
    written: s.counts.written,
    alreadyReported: s.counts.alreadyReported,
    failed: { ...s.counts.failed },
    dropped: s.counts.dropped,
    queued: queuedCount(s),
    overflow: s.waitingForRoom.size,
    inFlight: s.writing,
  };
}

export interface RejectionSnapshot {
  name: string;
  namespace: string;
  pod: string;
  code: string;
  state: StateName;
  /** When a delayed, paused or backing-off entry is due. */
  until?: number;
  /** A write in flight for a rejection that went away meanwhile. */
  resolved?: boolean;
  attempts: number;
  firstSeen: number;
}

export interface SinkSnapshot extends SinkCounts {
  stopped: boolean;
  /** Tracked rejections, in the order they were first seen. */
  rejections: RejectionSnapshot[];
  pauseAll: Pause | null;
  namespacePauses: Record<string, Pause>;
}

function rejectionSnapshot(entry: Entry): RejectionSnapshot {
  const { report, phase } = entry;
  return {
    name: report.name,
    namespace: report.rejection.namespace,
    pod: report.rejection.pod,
    code: report.rejection.code,
    state: phase.state,
    ...('until' in phase ? { until: phase.until } : {}),
    ...(phase.state === 'writing' && phase.resolved ? { resolved: true } : {}),
    attempts: entry.attempts,
    firstSeen: entry.firstSeen,
  };
}

/** A copy of the state as plain data, for tests and for reading. */
export function snapshot(s: SinkState): SinkSnapshot {
  return {
    stopped: s.stopped,
    ...countsOf(s),
    rejections: [...s.entries.values()].map(rejectionSnapshot),
    pauseAll: s.pauseAll === null ? null : { ...s.pauseAll },
    namespacePauses: Object.fromEntries([...s.namespacePauses].map(([ns, p]) => [ns, { ...p }])),
  };
}
