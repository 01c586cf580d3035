import type { Retry } from '../src/core/backoff.js';
import type { DeliveryReport, TableDelivery } from './delivery.js';
import type { EdgeState } from './edge-state.js';
import type { FaultCounts, NginxFault } from './error-log.js';
import type { ManagerCounts, NginxFailure } from './manager-state.js';

// What the nginx manager reports to /status, /readyz and the metrics: its state machine's
// state, what the delivery and the watchers know, with nginx's own text scrubbed of API keys.

/** What the last apply did and what nginx has done so far, for status, readiness and metrics. */
export interface NginxOutcome extends ManagerCounts {
  /** `documented` or `dynamic`: how tables reach nginx. */
  mode: DeliveryReport['mode'];
  /** Whether the last apply (or its retry) succeeded; null before the first one. */
  ok: boolean | null;
  /** Why the last apply failed; null once one succeeds. */
  error: NginxFailure | null;
  /** Since when `ok` has had its value (ms since the epoch): how long nginx has been failing, or not. */
  since: number | null;
  /** The latest failure, kept after later successes, with its time. */
  lastError: (NginxFailure & { at: number }) | null;
  /** True while nginx does not serve the last table it was given (a failed apply, being retried). */
  behind: boolean;
  /** Set while that table waits to be tried again; null otherwise. */
  retry: Retry | null;
  /** Set while nginx is down and waits to be started again; null otherwise. */
  restart: Retry | null;
  /** The version of the config nginx serves (a hash of its text), null before the first success. */
  configVersion: string | null;
  /** Dynamic mode: the version of the table every worker serves; null in documented mode. */
  tableVersion: string | null;
  /** The nginx master's pid while it runs. */
  pid: number | null;
  /** Old workers still finishing their connections after reloads (nginx's "shutting down"). */
  workersShuttingDown: number;
  /** Lines nginx wrote to its error log at crit, alert and emerg since the router started. */
  errors: FaultCounts;
  /** The latest of those, newest last. */
  recentErrors: NginxFault[];
}

/** The report, a copy that shares nothing with the manager. */
export function outcomeOf(live: EdgeState, delivery: TableDelivery): NginxOutcome {
  const { machine: state, errorLog, workersShuttingDown, secrets } = live;
  const errors = errorLog?.report() ?? { counts: { crit: 0, alert: 0, emerg: 0 }, recent: [] };
  const { desired, served } = state;
  return structuredClone({
    mode: delivery.mode,
    ok: state.ok,
    error: state.error,
    since: state.since,
    lastError: state.lastError,
    behind: desired !== null && desired !== served,
    retry: state.retry,
    restart: state.restart,
    configVersion: state.liveConfig,
    tableVersion: delivery.report().tableVersion,
    reloads: state.reloads,
    lastLoadedAt: state.lastLoadedAt,
    unchanged: state.unchanged,
    failures: state.failures,
    unexpectedExits: state.unexpectedExits,
    restarts: state.restarts,
    leftoversEnded: state.leftoversEnded,
    lastApplyMs: state.lastApplyMs,
    lastApplyTimings: state.lastApplyTimings,
    pid: state.pid,
    workersShuttingDown,
    errors: errors.counts,
    recentErrors: errors.recent.map((f) => ({ ...f, message: secrets.scrub(f.message) })),
  });
}
