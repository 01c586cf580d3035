import type { Logger } from 'pino';
import { defaultConfig, type RouterConfig } from '../src/core/config.js';
import type { DataPlane } from '../src/core/data-plane.js';
import type { RouteTable } from '../src/core/route-table.js';
import type { ConfPieces } from './conf-pieces.js';
import { documentedDelivery, type TableDelivery } from './delivery.js';
import { createEdge } from './dispatch.js';
import { createEdgeState, type EdgeSetup } from './edge-state.js';
import { createLeftovers } from './leftovers.js';
import type { ManagerState } from './manager-state.js';
import type { StopTimeouts } from './master.js';
import { outcomeOf, type NginxOutcome } from './outcome.js';
import { resolveFiles, type NginxFiles } from './prefix-files.js';
import type { NginxRuntime } from './render.js';
import type { WorkerIdentity } from './worker-user.js';

export type { Retry } from '../src/core/backoff.js';
export type { ApplyTimings, NginxErrorCode, NginxFailure, ManagerState } from './manager-state.js';
export { NginxApplyError } from './load.js';
export type { NginxOutcome } from './outcome.js';
export { resolveFiles, type NginxFiles } from './prefix-files.js';

// The nginx data plane: nginx as our child, kept serving the tables it is given. Its state
// is data (manager-state.ts: phases, the one transition function); the edge runs what the
// transitions ask for, in pieces that share one state object (edge-state.ts): the dispatch
// of events and effects (dispatch.ts, with job-queue.ts and manager-timers.ts), the jobs
// that load, restart and stop nginx (apply-job.ts, restart-stop-jobs.ts), its processes
// and watchers (master-edge.ts), and the report (outcome.ts). How a table reaches nginx is
// the delivery's (delivery.ts): rendered into nginx.conf and reloaded (documented), or sent
// as data to Lua (dynamic).
//
// A config is checked (`nginx -t`) and installed atomically; a config nginx fails to load
// is taken off disk again, so the last good one keeps serving and is what a restart
// loads. An apply resolves only once nginx serves the table. nginx's own faults (its
// error log at crit and worse) reach our log, and old workers still finishing their
// connections after reloads are counted.
//
// The retry lives here rather than in the controller: only this data plane can fail to
// take a table (the proxy swaps it in memory), it knows why and whether nginx itself is
// down, and lastOutcome() reports the pending retry to /status, /readyz and the metrics.

export interface NginxDataPlaneOptions {
  nginxBinary: string;
  /** nginx's prefix (`-p`): the directory its files default to, private to this manager. */
  prefix: string;
  /**
   * The documented mode's config for a table, run by us with `runtime`'s files and status
   * server: as text, or as pieces (the incremental renderer's), hashed and written without
   * being joined. Give either this or `delivery`.
   */
  render?: (table: RouteTable, runtime: NginxRuntime) => string | ConfPieces;
  /** How a table reaches nginx (delivery.ts); the documented config of `render` by default. */
  delivery?: TableDelivery;
  files?: Partial<NginxFiles>;
  /** Loopback port of the status server; a free one is picked when absent. */
  statusPort?: number;
  logger?: Logger;
  /** Delay before restarting an nginx that exited unexpectedly, doubling up to `maxMs`. */
  restartBackoffMs?: { initialMs?: number; maxMs?: number };
  /**
   * Delay before a table nginx did not take (refused, failed to load) is tried again,
   * doubling up to `maxMs`; a newer table replaces it.
   */
  retryBackoffMs?: { initialMs?: number; maxMs?: number };
  /**
   * Whether each new config goes through `nginx -t` before nginx loads it (NGINX_TEST_CONFIG).
   * Without, nginx parses a new config once instead of twice: its own load is the check.
   */
  checkBeforeLoad?: boolean;
  /** How long nginx may take to start or reload before the attempt counts as failed (NGINX_RELOAD_TIMEOUT_MS). */
  confirmTimeoutMs?: number;
  /** SIGQUIT's grace (SHUTDOWN_GRACE_MS), then SIGTERM's, before SIGKILL. */
  stopTimeouts?: Partial<StopTimeouts>;
  /**
   * Who nginx's workers run as when the router runs as root (then written as nginx's
   * `user`, and given a way to the temporary directory); found when absent, null when not root.
   */
  workerIdentity?: WorkerIdentity | null;
  /** How often nginx's error log and its old workers are looked at. */
  watchIntervalMs?: number;
}

export interface NginxDataPlane extends DataPlane {
  lastOutcome(): NginxOutcome;
  /** The manager's state machine, as data (manager-state.ts). */
  state(): ManagerState;
  /** The files nginx uses, e.g. to read its error log. */
  readonly files: NginxFiles;
}

/** An nginx that ran this long before it died is restarted after the shortest delay again. */
const RESTART_STABLE_MS = 10_000;
/** How long a leftover nginx process may take to stop accepting after SIGQUIT before it is killed. */
const LEFTOVER_QUIT_MS = 1_000;

/** What the manager runs with of the settings table (NGINX_TEST_CONFIG, NGINX_RELOAD_TIMEOUT_MS, SHUTDOWN_GRACE_MS). */
export interface NginxManagerSettings {
  checkBeforeLoad: boolean;
  confirmTimeoutMs: number;
  stopTimeouts: StopTimeouts;
}

/** SIGTERM's wait before SIGKILL, once SIGQUIT's grace ran out: nginx's fast stop. */
const FAST_STOP_MS = 3_000;

/** The manager's options as `run` gives them: from the router's configuration. */
export function nginxManagerOptionsFrom(
  config: RouterConfig,
): Pick<NginxDataPlaneOptions, 'checkBeforeLoad' | 'confirmTimeoutMs' | 'stopTimeouts'> {
  return {
    checkBeforeLoad: config.nginxTestConfig,
    confirmTimeoutMs: config.nginxReloadTimeoutMs,
    // SIGQUIT, nginx's graceful stop, gets the shutdown grace; then SIGTERM, then SIGKILL.
    stopTimeouts: { gracefulMs: config.shutdownGraceMs, fastMs: FAST_STOP_MS },
  };
}

/** What a manager made with `options` runs with: each setting not given takes the settings table's default. */
export function resolveNginxManagerSettings(options: Partial<NginxDataPlaneOptions> = {}): NginxManagerSettings {
  const defaults = nginxManagerOptionsFrom(defaultConfig());
  return {
    checkBeforeLoad: options.checkBeforeLoad ?? (defaults.checkBeforeLoad as boolean),
    confirmTimeoutMs: options.confirmTimeoutMs ?? (defaults.confirmTimeoutMs as number),
    stopTimeouts: { ...(defaults.stopTimeouts as StopTimeouts), ...options.stopTimeouts },
  };
}

export function createNginxDataPlane(options: NginxDataPlaneOptions): NginxDataPlane {
  const setup = edgeSetupOf(options);
  const live = createEdgeState(options);
  const edge = createEdge(setup, live, {
    retry: { initialMs: 1_000, maxMs: 30_000, ...options.retryBackoffMs },
    restart: { initialMs: 100, maxMs: 5_000, ...options.restartBackoffMs },
    restartStableMs: RESTART_STABLE_MS,
  });
  let closing: Promise<void> | null = null;
  return {
    files: setup.files,
    apply(table) {
      const n = ++live.tableCount;
      live.tables.set(n, table);
      live.secrets.learn(table);
      return edge.dispatch({ type: 'apply', table: n }) as Promise<void>;
    },
    state: () => structuredClone(live.machine),
    lastOutcome: () => outcomeOf(live, setup.delivery),
    close() {
      closing ??= edge.dispatch({ type: 'close' }) ?? Promise.resolve();
      return closing;
    },
  };
}

/** What the manager's edge runs with, from its options and the settings table's defaults. */
function edgeSetupOf(options: NginxDataPlaneOptions): EdgeSetup {
  const { nginxBinary, prefix, logger } = options;
  const { checkBeforeLoad, confirmTimeoutMs, stopTimeouts } = resolveNginxManagerSettings(options);
  const delivery = options.delivery ?? (options.render ? documentedDelivery(options.render) : null);
  if (delivery === null) throw new TypeError('createNginxDataPlane needs render or delivery');
  return {
    nginxBinary,
    prefix,
    files: resolveFiles(prefix, options.files),
    delivery,
    logger,
    checkBeforeLoad,
    confirmTimeoutMs,
    stopTimeouts,
    watchIntervalMs: options.watchIntervalMs ?? 500,
    leftovers: createLeftovers({ quitMs: LEFTOVER_QUIT_MS, graceMs: stopTimeouts.gracefulMs }),
  };
}
