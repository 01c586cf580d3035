import type { ErrorCode } from '../src/core/error-codes.js';
import { backoffDelay, type Retry } from '../src/core/backoff.js';

// The nginx manager's state as data, and the one function that changes it. Everything
// the manager does that takes time (start nginx, load a config, send a table, stop) runs
// at the edge (dispatch.ts and the jobs) and comes back here as an event; timers too. So what the
// manager is doing, and why, can be read at any moment (`state()`), and a test can walk
// the transitions without an nginx.
//
//   idle ──apply──▶ (job) ──applied──▶ serving ──exited──▶ down ──restart-due──▶ (job)
//     ▲                 └──apply-failed──▶ idle/serving         ▲        │ restarted ▼
//     │                                     (retry later)       └────────┴── serving
//   any ──close──▶ closing ──stopped──▶ closed
//
// Tables are referred to by the number apply() gave them: the state holds no table.

export type Phase =
  /** No nginx runs and none is due to: before the first table served, or after a failed first start. */
  | 'idle'
  /** The master runs and serves the config `live` names. */
  | 'serving'
  /** The master exited without being asked to; a restart on the last good config is due. */
  | 'down'
  | 'closing'
  | 'closed';

/** The job the edge is running, one at a time. */
export type Job = 'apply' | 'restart' | 'stop' | null;

/** The codes of nginx's failures, from the error-code catalogue. */
export type NginxErrorCode = Extract<ErrorCode, `KR_NGINX_${string}`>;

export interface NginxFailure {
  code: NginxErrorCode;
  message: string;
}

/** Where an apply spent its time, in milliseconds. */
export interface ApplyTimings {
  /** Rendering the config and its version. */
  renderMs: number;
  /** Writing the candidate file to disk (synced). */
  writeMs: number;
  /** `nginx -t` on it. */
  checkMs: number;
  /** From the reload signal (or the start) until a new worker answered with the new version. */
  loadMs: number;
  /** From then until no old worker accepted connections any more. */
  retireMs: number;
  /** Sending the table to nginx as data until every worker served it (dynamic mode; 0 otherwise). */
  sendMs: number;
  totalMs: number;
}

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

export interface ManagerSettings {
  retry: Backoff;
  restart: Backoff;
  /** An nginx that ran this long before it died is restarted after the shortest delay again. */
  restartStableMs: number;
}

export interface ManagerState extends ManagerCounts {
  phase: Phase;
  job: Job;
  /** The number of the last table given to apply(): what nginx should serve. */
  desired: number | null;
  /** The number of the table nginx serves, confirmed. */
  served: number | null;
  /** The version of the config nginx serves (a hash of its text), null before the first start. */
  liveConfig: string | null;
  /**
   * False after a load that failed in a way that leaves doubt about what nginx serves (a
   * reload that may have taken effect after all): the next apply loads even an unchanged config.
   */
  liveConfirmed: boolean;
  /**
   * The last apply found nginx's control socket gone (dynamic mode): the master runs but
   * can take no table. If the retry finds it gone still, a fresh master replaces it.
   */
  controlLost: boolean;
  /** Whether the last apply (or its retry) succeeded; null before the first one. */
  ok: boolean | null;
  error: NginxFailure | null;
  since: number | null;
  lastError: (NginxFailure & { at: number }) | null;
  /** The desired table waits to be tried again (its apply failed). */
  retry: Retry | null;
  retryAttempts: number;
  /** nginx waits to be started again. */
  restart: Retry | null;
  restartAttempts: number;
  pid: number | null;
  startedAt: number | null;
}

/** What the manager has counted and timed so far: part of its state, and of its report. */
export interface ManagerCounts {
  /** Successful graceful reloads. */
  reloads: number;
  /** When nginx last started serving a new config (start, reload or restart), ms since the epoch. */
  lastLoadedAt: number | null;
  /** Applies that found the table served already and left nginx alone. */
  unchanged: number;
  /** Applies (first tries and retries) that failed. */
  failures: number;
  /** Times nginx exited without being asked to. */
  unexpectedExits: number;
  /** Successful restarts after such an exit. */
  restarts: number;
  /** nginx processes left running by masters that died (or an earlier router) that were ended. */
  leftoversEnded: number;
  /** How long the last successful apply took, from render to confirmed. */
  lastApplyMs: number | null;
  /** Where it spent that time. */
  lastApplyTimings: ApplyTimings | null;
}

export type ManagerEvent =
  | { type: 'apply'; table: number }
  | { type: 'job-started'; job: Exclude<Job, null> }
  /** A job found nothing to do (a restart of an nginx that runs again). */
  | { type: 'job-skipped' }
  | { type: 'applied'; table: number; result: AppliedResult; at: number }
  | {
      type: 'apply-failed';
      table: number;
      error: NginxFailure;
      /** The load may have taken effect after all (a reload that timed out): what nginx serves is in doubt. */
      doubt: boolean;
      /** Whether the master still runs. */
      running: boolean;
      /** Set when nginx did load a new config before the apply failed (a table it then did not take). */
      loaded?: { configVersion: string; pid: number };
      /** The table could not reach nginx in a way only a fresh nginx repairs (its control socket is gone). */
      controlLost?: boolean;
      at: number;
    }
  | { type: 'exited'; pid: number | null; ranMs: number; at: number }
  | { type: 'restarted'; pid: number; at: number }
  | { type: 'restart-failed'; at: number }
  | { type: 'retry-due'; at: number }
  | { type: 'restart-due'; at: number }
  | { type: 'leftovers-ended'; count: number }
  | { type: 'close' }
  | { type: 'stopped' };

export type AppliedResult =
  | { kind: 'unchanged' }
  | { kind: 'started'; pid: number; configVersion: string; timings: ApplyTimings }
  | { kind: 'reloaded'; configVersion: string; timings: ApplyTimings }
  /** The config was already live; only the table was sent (dynamic mode). */
  | { kind: 'sent'; timings: ApplyTimings };

/** The manager's two timers: a table to try again, an nginx to start again. */
export type ManagerTimer = 'retry' | 'restart';

/** What the edge must do after a transition. */
export type Effect =
  | { type: 'run-apply'; table: number }
  | { type: 'run-restart' }
  | { type: 'run-stop' }
  | { type: 'set-timer'; timer: ManagerTimer; delayMs: number }
  | { type: 'cancel-timer'; timer: ManagerTimer }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; message: string; fields: Record<string, unknown> };

export interface Transition {
  state: ManagerState;
  effects: Effect[];
}

export function initialState(): ManagerState {
  return {
    phase: 'idle',
    job: null,
    desired: null,
    served: null,
    liveConfig: null,
    liveConfirmed: false,
    controlLost: false,
    ok: null,
    error: null,
    since: null,
    lastError: null,
    retry: null,
    retryAttempts: 0,
    restart: null,
    restartAttempts: 0,
    pid: null,
    startedAt: null,
    reloads: 0,
    lastLoadedAt: null,
    unchanged: 0,
    failures: 0,
    unexpectedExits: 0,
    restarts: 0,
    leftoversEnded: 0,
    lastApplyMs: null,
    lastApplyTimings: null,
  };
}

/** Whether the manager still takes tables: not closing or closed. */
export const isOpen = (state: ManagerState): boolean => state.phase !== 'closing' && state.phase !== 'closed';

function succeeded(state: ManagerState, at: number): ManagerState {
  return { ...state, ok: true, error: null, since: state.ok === true ? state.since : at, controlLost: false };
}

function failed(state: ManagerState, error: NginxFailure, at: number): ManagerState {
  return {
    ...state,
    ok: false,
    error,
    since: state.ok === false ? state.since : at,
    lastError: { ...error, at },
    failures: state.failures + 1,
  };
}

/** A timer due after the next backoff delay of `attempts` failures so far. */
function schedule(
  timer: ManagerTimer,
  attempts: number,
  backoff: Backoff,
  at: number,
): { retry: Retry; effect: Effect } {
  const attempt = attempts + 1;
  const delayMs = backoffDelay(attempt, backoff);
  return { retry: { attempt, nextAt: at + delayMs }, effect: { type: 'set-timer', timer, delayMs } };
}

function scheduleRetry(state: ManagerState, settings: ManagerSettings, at: number): Transition {
  if (!isOpen(state) || state.retry !== null) return { state, effects: [] };
  const { retry, effect } = schedule('retry', state.retryAttempts, settings.retry, at);
  const log: Effect = {
    type: 'log',
    level: 'warn',
    message: 'trying the table nginx did not take again later',
    fields: { attempt: retry.attempt, inMs: retry.nextAt - at },
  };
  return { state: { ...state, retry, retryAttempts: retry.attempt }, effects: [effect, log] };
}

function scheduleRestart(state: ManagerState, settings: ManagerSettings, at: number): Transition {
  if (!isOpen(state) || state.restart !== null || state.liveConfig === null) return { state, effects: [] };
  const { retry, effect } = schedule('restart', state.restartAttempts, settings.restart, at);
  const log: Effect = {
    type: 'log',
    level: 'info',
    message: 'restarting nginx',
    fields: { inMs: retry.nextAt - at, attempt: retry.attempt },
  };
  return { state: { ...state, restart: retry, restartAttempts: retry.attempt }, effects: [effect, log] };
}

function onApplied(state: ManagerState, event: Extract<ManagerEvent, { type: 'applied' }>): Transition {
  const { result, at } = event;
  let next = succeeded({ ...state, job: null, served: event.table }, at);
  if (result.kind === 'unchanged') next = { ...next, unchanged: next.unchanged + 1 };
  else {
    next = { ...next, lastApplyMs: result.timings.totalMs, lastApplyTimings: result.timings };
    if (result.kind !== 'sent')
      next = { ...next, liveConfig: result.configVersion, liveConfirmed: true, lastLoadedAt: at };
    if (result.kind === 'started') next = { ...next, phase: 'serving', pid: result.pid, startedAt: at };
    if (result.kind === 'reloaded') next = { ...next, reloads: next.reloads + 1 };
  }
  const effects: Effect[] = [];
  if (event.table === state.desired) {
    next = { ...next, retry: null, retryAttempts: 0 };
    if (state.retry !== null) effects.push({ type: 'cancel-timer', timer: 'retry' });
  }
  if (result.kind === 'started' && state.restart !== null) {
    next = { ...next, restart: null };
    effects.push({ type: 'cancel-timer', timer: 'restart' });
  }
  return { state: next, effects };
}

function onApplyFailed(
  state: ManagerState,
  event: Extract<ManagerEvent, { type: 'apply-failed' }>,
  settings: ManagerSettings,
): Transition {
  const { at } = event;
  if (event.error.code === 'KR_NGINX_CLOSED') return { state: { ...state, job: null }, effects: [] };
  let next = failed({ ...state, job: null, controlLost: event.controlLost === true }, event.error, at);
  if (event.loaded !== undefined) {
    const { configVersion, pid } = event.loaded;
    next = { ...next, liveConfig: configVersion, liveConfirmed: true, lastLoadedAt: at };
    if (next.phase !== 'serving') next = { ...next, phase: 'serving', pid, startedAt: at };
  }
  if (event.doubt) next = { ...next, liveConfirmed: false };
  const effects: Effect[] = [
    {
      type: 'log',
      level: 'error',
      message: 'nginx kept its previous config',
      fields: { code: event.error.code, err: event.error.message },
    },
  ];
  if (!event.running && next.phase === 'serving') next = { ...next, phase: 'down', pid: null };
  if (next.phase === 'down') {
    const restart = scheduleRestart(next, settings, at);
    next = restart.state;
    effects.push(...restart.effects);
  }
  if (event.table === state.desired) {
    const retry = scheduleRetry(next, settings, at);
    next = retry.state;
    effects.push(...retry.effects);
  }
  return { state: next, effects };
}

/**
 * The one transition function: the state after `event`, and what the edge must do.
 * Pure: time comes in the events.
 */
export function transition(state: ManagerState, event: ManagerEvent, settings: ManagerSettings): Transition {
  switch (event.type) {
    case 'apply': {
      if (!isOpen(state)) return { state, effects: [{ type: 'run-apply', table: event.table }] };
      const effects: Effect[] = [{ type: 'run-apply', table: event.table }];
      if (state.retry !== null) effects.unshift({ type: 'cancel-timer', timer: 'retry' });
      return { state: { ...state, desired: event.table, retry: null }, effects };
    }
    case 'job-started':
      return { state: { ...state, job: event.job }, effects: [] };
    case 'job-skipped':
      return { state: { ...state, job: null }, effects: [] };
    case 'applied':
      return onApplied(state, event);
    case 'apply-failed':
      return onApplyFailed(state, event, settings);
    case 'exited': {
      if (!isOpen(state) || state.phase !== 'serving') return { state, effects: [] };
      const stable = event.ranMs > settings.restartStableMs;
      const down: ManagerState = {
        ...state,
        phase: 'down',
        controlLost: false,
        pid: null,
        startedAt: null,
        unexpectedExits: state.unexpectedExits + 1,
        restartAttempts: stable ? 0 : state.restartAttempts,
      };
      return scheduleRestart(down, settings, event.at);
    }
    case 'restart-due':
      if (!isOpen(state)) return { state, effects: [] };
      return { state: { ...state, restart: null }, effects: [{ type: 'run-restart' }] };
    case 'restarted':
      return {
        state: {
          ...state,
          job: null,
          phase: 'serving',
          pid: event.pid,
          startedAt: event.at,
          liveConfirmed: true,
          controlLost: false,
          restarts: state.restarts + 1,
          lastLoadedAt: event.at,
        },
        effects: [],
      };
    case 'restart-failed':
      return scheduleRestart({ ...state, job: null, phase: isOpen(state) ? 'down' : state.phase }, settings, event.at);
    case 'retry-due':
      if (!isOpen(state) || state.desired === null) return { state: { ...state, retry: null }, effects: [] };
      return { state: { ...state, retry: null }, effects: [{ type: 'run-apply', table: state.desired }] };
    case 'leftovers-ended':
      return { state: { ...state, leftoversEnded: state.leftoversEnded + event.count }, effects: [] };
    case 'close': {
      if (!isOpen(state)) return { state, effects: [] };
      const effects: Effect[] = [
        { type: 'cancel-timer', timer: 'retry' },
        { type: 'cancel-timer', timer: 'restart' },
        { type: 'run-stop' },
      ];
      return { state: { ...state, phase: 'closing', retry: null, restart: null }, effects };
    }
    case 'stopped':
      return { state: { ...state, phase: 'closed', job: null, pid: null, startedAt: null }, effects: [] };
  }
}
