import type { Pod } from '../core/kube-objects.js';
import type { RouteTable } from '../core/route-table.js';
import type { FailureCause, WriteOutcome } from './event-writer.js';
import {
  POD_STATE_CODES,
  rejectionEvent,
  reportableRejections,
  type RejectionReport,
  type RouteRejectedEvent,
} from './rejection-event.js';
import {
  forget,
  moveTo,
  queuedCount,
  track,
  type Entry,
  type Pause,
  type Phase,
  type SinkState,
} from './sink-state.js';

// The events sink's one transition function: `step(state, input)` applies what happened (a
// new table, time passing, a write's outcome, stop) to the state and returns what to do
// (write an Event, set the timer, log, abort). It reads the time only from its input and
// does no I/O, so a test drives it with made-up times. It changes the state in place rather
// than copying it: the state holds up to ten thousand rejections, and a copy per write
// would cost more than the write.

export type SinkInput =
  /** The controller published a table. */
  | { type: 'table'; now: number; table: RouteTable; pods: readonly Pod[] }
  /** The timer the last step asked for went off. */
  | { type: 'tick'; now: number }
  /** A write ended. */
  | { type: 'written'; now: number; name: string; outcome: WriteOutcome }
  | { type: 'stop' };

export type SinkEffect =
  | { type: 'write'; name: string; event: RouteRejectedEvent }
  /** Run a `tick` at this time (Infinity: no timer). */
  | { type: 'wakeAt'; at: number }
  | { type: 'warn'; fields: Record<string, unknown>; message: string }
  | { type: 'abortWrites' };

/** A cause seen again within this long belongs to the same episode: it is not logged again. */
export const LOG_EPISODE_MS = 10 * 60_000;

/** Refusals that retrying would not change: the Event counts as reported. */
const FINAL_CAUSES: ReadonlySet<FailureCause> = new Set<FailureCause>(['invalid', 'namespace_gone']);

const RETRIED_MESSAGE =
  'cannot write a Kubernetes Event; routing is not affected, the write is retried with backoff ' +
  '(further failures of this kind are counted, not logged)';
const NOT_RETRIED_MESSAGE =
  'the API server refused a Kubernetes Event and it is not retried; routing is not affected ' +
  '(further failures of this kind are counted, not logged)';

export function step(s: SinkState, input: SinkInput): SinkEffect[] {
  if (input.type === 'stop') return stop(s);
  const effects: SinkEffect[] = [];
  if (input.type === 'written') {
    const entry = s.entries.get(input.name);
    if (entry === undefined || entry.phase.state !== 'writing') return effects;
    // Stopped: the write was aborted; nothing more happens to it.
    if (s.stopped) forget(s, entry);
    else settle(s, entry, input.outcome, input.now, effects);
  }
  if (s.stopped) return effects;
  if (input.type === 'table') reconcile(s, input.table, input.pods, input.now);
  dispatch(s, input.now, effects);
  return effects;
}

function stop(s: SinkState): SinkEffect[] {
  s.stopped = true;
  return [{ type: 'abortWrites' }, { type: 'wakeAt', at: Infinity }];
}

/** Where a rejection starts, or restarts after waiting for room: a pod state waits out its delay. */
function startPhase(s: SinkState, entry: Entry, now: number): Phase {
  const until = entry.firstSeen + s.rules.stateDelayMs;
  const podState = POD_STATE_CODES.has(entry.report.rejection.code);
  return podState && until > now ? { state: 'delayed', until } : { state: 'due' };
}

/** Follows a new table: tracks its new rejections, forgets the ones that resolved. */
function reconcile(s: SinkState, table: RouteTable, pods: readonly Pod[], now: number): void {
  promoteDue(s, now);
  const current = new Map<string, RejectionReport>();
  const names = new Map<string, string>();
  for (const report of reportableRejections(table, pods, s.names)) {
    current.set(report.name, report);
    names.set(report.identity, report.name);
  }
  s.names = names;
  for (const entry of s.entries.values()) {
    if (!current.has(entry.report.name)) rejectionResolved(s, entry, now);
  }
  for (const [name, report] of current) {
    const entry = s.entries.get(name);
    if (entry === undefined) {
      admitNew(s, report, now);
      continue;
    }
    // Same rejection, perhaps a newer reason (another owner): a write to come carries the newest.
    entry.report = report;
    if (entry.phase.state === 'writing' && entry.phase.resolved) {
      // It went away and came back while its write was in flight: that write reports it.
      entry.phase.resolved = false;
      entry.firstSeen = now;
    }
  }
}

/** The rejection went away: its Event is no longer wanted. */
function rejectionResolved(s: SinkState, entry: Entry, now: number): void {
  if (entry.phase.state === 'writing') {
    // Its outcome decides what is counted.
    entry.phase.resolved = true;
    return;
  }
  if (wasDue(s, entry, now)) s.counts.dropped++;
  forget(s, entry);
}

/**
 * Whether a rejection that resolves now loses an Event it was due for. Not a pod state
 * that ended before its delay (a start-up, not a loss), nor one already reported.
 */
function wasDue(s: SinkState, entry: Entry, now: number): boolean {
  switch (entry.phase.state) {
    case 'delayed':
    case 'reported':
    case 'writing':
      return false;
    case 'waitingForRoom':
      return startPhase(s, entry, now).state === 'due';
    case 'due':
    case 'paused':
    case 'backingOff':
      return true;
  }
}

function admitNew(s: SinkState, report: RejectionReport, now: number): void {
  const entry: Entry = { report, firstSeen: now, attempts: 0, phase: { state: 'waitingForRoom' } };
  // Rejections already waiting for room go first.
  if (s.waitingForRoom.size === 0 && queuedCount(s) < s.rules.maxQueued) entry.phase = startPhase(s, entry, now);
  track(s, entry);
}

/** Delayed, paused and backing-off entries whose time has come become due. */
function promoteDue(s: SinkState, now: number): void {
  if (now < s.nextWaitingDue) return;
  s.nextWaitingDue = Infinity;
  for (const entry of s.waiting.values()) {
    const { phase } = entry;
    const until = 'until' in phase ? phase.until : now;
    if (until <= now) moveTo(s, entry, { state: 'due' });
    else s.nextWaitingDue = Math.min(s.nextWaitingDue, until);
  }
}

/** Rejections left out of a full queue take the room there is, in order. */
function admitWaitingForRoom(s: SinkState, now: number): void {
  for (const entry of s.waitingForRoom.values()) {
    if (queuedCount(s) >= s.rules.maxQueued) return;
    moveTo(s, entry, startPhase(s, entry, now));
  }
}

/**
 * Starts the writes that may start now, in the order they became due, and asks for the
 * timer at the next moment something may change: a waiting entry due, a pause ending, a token.
 */
function dispatch(s: SinkState, now: number, effects: SinkEffect[]): void {
  promoteDue(s, now);
  admitWaitingForRoom(s, now);
  let wake = Infinity;
  for (const entry of s.due.values()) {
    if (s.writing >= s.rules.maxInFlight) break;
    if (s.pauseAll !== null && now < s.pauseAll.until) {
      wake = s.pauseAll.until;
      break;
    }
    const pause = s.namespacePauses.get(entry.report.rejection.namespace);
    if (pause !== undefined && now < pause.until) {
      moveTo(s, entry, { state: 'paused', until: pause.until });
      continue;
    }
    if (!s.bucket.tryTake(now)) {
      wake = now + s.bucket.msUntilToken(now);
      break;
    }
    moveTo(s, entry, { state: 'writing', resolved: false });
    const event = rejectionEvent(entry.report, s.rules.reportingInstance, entry.firstSeen);
    effects.push({ type: 'write', name: entry.report.name, event });
    admitWaitingForRoom(s, now);
  }
  effects.push({ type: 'wakeAt', at: Math.min(wake, s.nextWaitingDue) });
}

/** A write ended: the entry is reported, retried after a pause, or given up. */
function settle(s: SinkState, entry: Entry, outcome: WriteOutcome, now: number, effects: SinkEffect[]): void {
  const { namespace } = entry.report.rejection;
  if (outcome.ok) {
    if (outcome.created) s.counts.written++;
    else s.counts.alreadyReported++;
    // The API server takes writes again: pauses end, and the next failure starts from the first wait.
    s.pauseAll = null;
    s.namespacePauses.delete(namespace);
    finish(s, entry);
    return;
  }
  s.counts.failed[outcome.cause]++;
  entry.attempts++;
  if (FINAL_CAUSES.has(outcome.cause)) {
    warnOnce(s, entry, outcome, null, now, effects);
    finish(s, entry);
    return;
  }
  const pause = lengthenPause(s, namespace, outcome.cause, now);
  warnOnce(s, entry, outcome, pause.until - now, now, effects);
  if (entry.phase.state === 'writing' && entry.phase.resolved) {
    s.counts.dropped++;
    forget(s, entry);
  } else if (queuedCount(s) >= s.rules.maxQueued) {
    moveTo(s, entry, { state: 'waitingForRoom' });
  } else {
    moveTo(s, entry, { state: 'backingOff', until: pause.until });
  }
}

function finish(s: SinkState, entry: Entry): void {
  if (entry.phase.state === 'writing' && entry.phase.resolved) forget(s, entry);
  else moveTo(s, entry, { state: 'reported' });
}

/**
 * A refusal in one namespace (RBAC, a webhook) pauses that namespace; anything else
 * (credentials, throttling, the server or the network) pauses every write. Each failure
 * in a row waits longer.
 */
function lengthenPause(s: SinkState, namespace: string, cause: FailureCause, now: number): Pause {
  const perNamespace = cause === 'forbidden';
  const before = perNamespace ? s.namespacePauses.get(namespace) : s.pauseAll;
  const attempts = (before?.attempts ?? 0) + 1;
  const pause: Pause = { until: now + s.rules.retryDelayMs(attempts), attempts, cause };
  if (perNamespace) s.namespacePauses.set(namespace, pause);
  else s.pauseAll = pause;
  return pause;
}

/** Logs the first failure of a cause, and the next one only after a quiet spell (all are counted). */
function warnOnce(
  s: SinkState,
  entry: Entry,
  outcome: Extract<WriteOutcome, { ok: false }>,
  retryInMs: number | null,
  now: number,
  effects: SinkEffect[],
): void {
  const last = s.causeLastSeen.get(outcome.cause);
  s.causeLastSeen.set(outcome.cause, now);
  if (last !== undefined && now - last < LOG_EPISODE_MS) return;
  const { namespace, pod, code } = entry.report.rejection;
  const fields = { cause: outcome.cause, namespace, pod, code, err: outcome.message };
  if (retryInMs === null) effects.push({ type: 'warn', fields, message: NOT_RETRIED_MESSAGE });
  else effects.push({ type: 'warn', fields: { ...fields, retryInMs }, message: RETRIED_MESSAGE });
}
