import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { defaultConfig, type RouterConfig } from '../src/core/config.js';
import type { DataPlane } from '../src/core/data-plane.js';
import type { RouteTable } from '../src/core/route-table.js';
import type { Retry } from '../src/core/backoff.js';
import { firstLines } from './check.js';
import { piecesOf, PieceHashes, withVersion, type ConfPieces } from './conf-pieces.js';
import { ControlLostError, documentedDelivery, type DeliveryReport, type TableDelivery } from './delivery.js';
import { followErrorLog, type ErrorLogFollower, type FaultCounts, type NginxFault } from './error-log.js';
import { writeFileAtomic } from './files.js';
import { createLeftovers } from './leftovers.js';
import { installConfig, NginxApplyError, reloadMaster, startMaster, type LoadContext } from './load.js';
import {
  initialState,
  transition,
  type AppliedResult,
  type ApplyTimings,
  type Effect,
  type Job,
  type ManagerEvent,
  type ManagerSettings,
  type ManagerCounts,
  type ManagerState,
  type NginxFailure,
} from './manager-state.js';
import type { NginxMaster, StopTimeouts } from './master.js';
import type { NginxRuntime } from './render.js';
import { staleNginx } from './stale.js';
import { pickFreeLoopbackPort } from './status.js';
import { nginxWorkerIdentity, prepareWorkerAccess, type WorkerIdentity } from './worker-user.js';
import { groupMembers, identify, shuttingDownWorkers } from './workers.js';

export type { Retry } from '../src/core/backoff.js';
export type { ApplyTimings, NginxErrorCode, NginxFailure, ManagerState } from './manager-state.js';
export { NginxApplyError } from './load.js';

// The nginx data plane: nginx as our child, kept serving the tables it is given. Its state
// is data (manager-state.ts: phases, the one transition function); this module is the
// edge that runs what the transitions ask for: the jobs that start, load, restart and stop
// nginx, one at a time, and the timers that retry a table nginx did not take or restart an
// nginx that died. How a table reaches nginx is the delivery's (delivery.ts): rendered
// into nginx.conf and reloaded (documented), or sent as data to Lua (dynamic).
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

/** Where the managed nginx keeps its files; each defaults to a place under the prefix. */
export interface NginxFiles {
  conf: string;
  pid: string;
  errorLog: string;
  accessLog: string;
  tempDir: string;
}

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

export interface NginxDataPlane extends DataPlane {
  lastOutcome(): NginxOutcome;
  /** The manager's state machine, as data (manager-state.ts). */
  state(): ManagerState;
  /** The files nginx uses, e.g. to read its error log. */
  readonly files: NginxFiles;
}

interface VersionedConfig {
  text: ConfPieces;
  version: string;
}

const RESTART_STABLE_MS = 10_000;
/** How long a leftover nginx process may take to stop accepting after SIGQUIT before it is killed. */
const LEFTOVER_QUIT_MS = 1_000;
/** nginx faults logged in one watch interval; the rest are counted, and summed up in one line. */
const FAULTS_LOGGED_PER_INTERVAL = 20;

export function resolveFiles(prefix: string, overrides: Partial<NginxFiles> = {}): NginxFiles {
  return {
    conf: overrides.conf ?? join(prefix, 'nginx.conf'),
    pid: overrides.pid ?? join(prefix, 'nginx.pid'),
    errorLog: overrides.errorLog ?? join(prefix, 'logs', 'error.log'),
    accessLog: overrides.accessLog ?? join(prefix, 'logs', 'access.log'),
    tempDir: overrides.tempDir ?? join(prefix, 'temp'),
  };
}

/** Marks where a render puts the version, replaced by the hash of the text around it. */
const VERSION_PLACEHOLDER = `v${randomBytes(12).toString('hex')}`;

function zeroTimings(): ApplyTimings {
  return { renderMs: 0, writeMs: 0, checkMs: 0, loadMs: 0, retireMs: 0, sendMs: 0, totalMs: 0 };
}

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

// eslint-disable-next-line max-lines-per-function -- TODO split: the manager's edge (jobs, timers, processes) is still one closure; its state already moved out
export function createNginxDataPlane(options: NginxDataPlaneOptions): NginxDataPlane {
  const { nginxBinary, prefix, logger } = options;
  const { checkBeforeLoad, confirmTimeoutMs, stopTimeouts } = resolveNginxManagerSettings(options);
  const delivery = options.delivery ?? (options.render ? documentedDelivery(options.render) : null);
  if (delivery === null) throw new TypeError('createNginxDataPlane needs render or delivery');
  const files = resolveFiles(prefix, options.files);
  const settings: ManagerSettings = {
    retry: { initialMs: 1_000, maxMs: 30_000, ...options.retryBackoffMs },
    restart: { initialMs: 100, maxMs: 5_000, ...options.restartBackoffMs },
    restartStableMs: RESTART_STABLE_MS,
  };
  const leftovers = createLeftovers({ quitMs: LEFTOVER_QUIT_MS, graceMs: stopTimeouts.gracefulMs });
  const watchIntervalMs = options.watchIntervalMs ?? 500;

  let state = initialState();
  /** The tables the state names (the desired one and the served one), by number. */
  const tables = new Map<number, RouteTable>();
  let tableCount = 0;
  let master: NginxMaster | null = null;
  /** The text of the config nginx serves: what a restart loads. */
  let liveText: ConfPieces | null = null;
  let statusPort: number | null = options.statusPort ?? null;
  let workerIdentity: WorkerIdentity | null | undefined = options.workerIdentity;
  let prepared = false;
  let errorLog: ErrorLogFollower | null = null;
  let workersShuttingDown = 0;
  const timers: Record<'retry' | 'restart', NodeJS.Timeout | null> = { retry: null, restart: null };
  let queue: Promise<unknown> = Promise.resolve();
  const apiKeys = new Set<string>();
  const hashes = new PieceHashes();

  const running = (): boolean => master !== null && master.exit() === null;
  const isOpen = (): boolean => state.phase !== 'closing' && state.phase !== 'closed';
  const scrub = (text: string): string => {
    let out = text;
    for (const key of apiKeys) if (out.includes(key)) out = out.split(key).join('<redacted>');
    return out;
  };

  function dispatch(event: ManagerEvent): Promise<void> | undefined {
    const next = transition(state, event, settings);
    state = next.state;
    let job: Promise<void> | undefined;
    for (const effect of next.effects) job = perform(effect) ?? job;
    for (const n of tables.keys()) if (n !== state.desired && n !== state.served) tables.delete(n);
    return job;
  }

  /** Dispatches an event whose jobs nobody here waits for: a job that fails says so in the state it dispatches. */
  function notify(event: ManagerEvent): void {
    void dispatch(event)?.catch(() => undefined);
  }

  function perform(effect: Effect): Promise<void> | undefined {
    switch (effect.type) {
      case 'run-apply': {
        const table = tables.get(effect.table);
        if (table === undefined) return undefined;
        return enqueue('apply', () => applyJob(effect.table, table));
      }
      case 'run-restart':
        void enqueue('restart', restartJob).catch(() => undefined);
        return undefined;
      case 'run-stop':
        return enqueue('stop', stopJob);
      case 'set-timer': {
        clearTimer(effect.timer);
        const due: ManagerEvent['type'] = effect.timer === 'retry' ? 'retry-due' : 'restart-due';
        timers[effect.timer] = setTimeout(() => {
          timers[effect.timer] = null;
          notify({ type: due, at: Date.now() });
        }, effect.delayMs);
        return undefined;
      }
      case 'cancel-timer':
        clearTimer(effect.timer);
        return undefined;
      case 'log':
        logger?.[effect.level](effect.fields, effect.message);
        return undefined;
    }
  }

  function clearTimer(timer: 'retry' | 'restart'): void {
    const t = timers[timer];
    if (t !== null) clearTimeout(t);
    timers[timer] = null;
  }

  /** Runs jobs one after the other, whatever became of the one before. */
  function enqueue(job: Exclude<Job, null>, run: () => Promise<void>): Promise<void> {
    const next = queue.then(
      () => {
        notify({ type: 'job-started', job });
        return run();
      },
      () => {
        notify({ type: 'job-started', job });
        return run();
      },
    );
    queue = next.catch(() => undefined);
    return next;
  }

  function loadContext(port: number): LoadContext {
    return {
      nginxBinary,
      prefix,
      confPath: files.conf,
      errorLog: files.errorLog,
      statusPort: port,
      confirmTimeoutMs,
      stopTimeouts,
      ...(logger ? { logger } : {}),
    };
  }

  /** The directories nginx needs, its workers' way to them, the status port, and the watchers. */
  async function prepare(): Promise<number> {
    if (!prepared) {
      for (const dir of new Set([prefix, dirname(files.conf), dirname(files.pid), files.tempDir]))
        await mkdir(dir, { recursive: true });
      // nginx's logs are the router's to read: they name clients and what they asked for.
      for (const dir of new Set([dirname(files.errorLog), dirname(files.accessLog)]))
        await mkdir(dir, { recursive: true, mode: 0o700 });
      workerIdentity ??= await nginxWorkerIdentity();
      if (workerIdentity !== null) {
        const opened = await prepareWorkerAccess(prefix, files.tempDir, workerIdentity);
        if (opened.length > 0)
          logger?.info(
            { user: workerIdentity.user, directories: opened },
            "let nginx's workers through to their temporary directory",
          );
      }
      await delivery!.prepare?.();
      errorLog ??= await followErrorLog(files.errorLog, { onFault: faultReporter(), intervalMs: watchIntervalMs });
      startWatchingWorkers();
      prepared = true;
    }
    statusPort ??= await pickFreeLoopbackPort();
    return statusPort;
  }

  /** Logs each nginx fault once, at most FAULTS_LOGGED_PER_INTERVAL per interval and a sum of the rest. */
  function faultReporter(): (fault: NginxFault) => void {
    let windowStart = 0;
    let logged = 0;
    let suppressed = 0;
    return (fault) => {
      const now = Date.now();
      if (now - windowStart >= watchIntervalMs) {
        if (suppressed > 0)
          logger?.error(
            { count: suppressed },
            'nginx reported more faults than were logged (all counted in k8s_router_nginx_errors_total)',
          );
        windowStart = now;
        logged = 0;
        suppressed = 0;
      }
      if (logged >= FAULTS_LOGGED_PER_INTERVAL) {
        suppressed++;
        return;
      }
      logged++;
      logger?.error(
        { nginxLevel: fault.level, nginx: scrub(fault.message) },
        'nginx reported a fault in its error log',
      );
    };
  }

  function startWatchingWorkers(): void {
    const timer = setInterval(
      () => {
        const pid = master?.pid;
        if (pid === undefined || !running()) {
          workersShuttingDown = 0;
          return;
        }
        void shuttingDownWorkers(pid).then((workers) => {
          workersShuttingDown = workers.length;
        });
      },
      Math.max(watchIntervalMs, 1_000),
    );
    timer.unref();
    stopWatchingWorkers = () => clearInterval(timer);
  }
  let stopWatchingWorkers = (): void => undefined;

  /**
   * Renders the table with a version that is a hash of the config itself, so the same
   * config gives the same version and an unchanged config is recognised without a reload.
   * The version goes where the render put a placeholder (a random word nothing else in a
   * config can contain); the pieces are hashed as they are, only the one holding it is copied.
   */
  function renderVersioned(table: RouteTable, port: number): VersionedConfig {
    let draft: ConfPieces;
    try {
      const runtime: NginxRuntime = {
        pidFile: files.pid,
        errorLog: files.errorLog,
        accessLog: files.accessLog,
        tempDir: files.tempDir,
        ...(workerIdentity ? { workerUser: { user: workerIdentity.user, group: workerIdentity.group } } : {}),
        status: { port, configVersion: VERSION_PLACEHOLDER },
      };
      draft = piecesOf(delivery!.config(table, runtime));
    } catch (err) {
      throw new NginxApplyError('KR_NGINX_RENDER_FAILED', `cannot render nginx.conf: ${(err as Error).message}`);
    }
    const versioned = withVersion(draft, VERSION_PLACEHOLDER, hashes);
    if (versioned === null)
      throw new NginxApplyError('KR_NGINX_RENDER_FAILED', 'the rendered nginx.conf has no status server');
    return versioned;
  }

  /** Follows a master we started: keeps what it leaves behind, and reports an exit nobody asked for. */
  function follow(m: NginxMaster): void {
    void m.exited.then((exit) => {
      leftovers.add(exit.leftBehind);
      if (m !== master || m.stopping()) return;
      master = null;
      logger?.error(
        {
          pid: m.pid,
          code: exit.code,
          signal: exit.signal,
          workersLeft: exit.leftBehind.length,
          output: firstLines(m.output()),
        },
        'nginx exited unexpectedly',
      );
      // Its workers serve the last config until the restart needs the ports.
      void dispatch({ type: 'exited', pid: m.pid ?? null, ranMs: Date.now() - m.startedAt, at: Date.now() })?.catch(
        () => undefined,
      );
    });
  }

  /** Frees the ports (processes of ours no running master manages stop accepting), then starts a master. */
  async function launch(ctx: LoadContext, version: string): Promise<NginxMaster> {
    leftovers.add(await staleNginx(files.pid, prefix));
    const stray = await leftovers.running();
    if (stray.length > 0) {
      logger?.warn(
        { pids: stray.map((p) => p.pid) },
        'stopping nginx processes that no running master manages (left by a master that died, or by an earlier router)',
      );
      notify({ type: 'leftovers-ended', count: await leftovers.release() });
    }
    await delivery!.beforeStart?.();
    const m = await startMaster(ctx, version, follow);
    master = m;
    delivery!.forget();
    return m;
  }

  async function applyJob(n: number, table: RouteTable): Promise<void> {
    const at = (): number => Date.now();
    if (!isOpen()) {
      const error = new NginxApplyError('KR_NGINX_CLOSED', 'the nginx data plane is closed');
      notify({
        type: 'apply-failed',
        table: n,
        error: { code: error.code, message: error.message },
        doubt: false,
        running: running(),
        at: at(),
      });
      throw error;
    }
    const startedAt = performance.now();
    const timings = zeroTimings();
    let doubt = false;
    let loaded: { configVersion: string; pid: number } | undefined;
    try {
      const ctx = loadContext(await prepare());
      const next = renderVersioned(table, ctx.statusPort);
      timings.renderMs = performance.now() - startedAt;
      const configLive = state.liveConfig === next.version && state.liveConfirmed && running();
      let result: AppliedResult;
      const sendStart = performance.now();
      const sent = configLive ? await sendOrRetire(table) : null;
      if (sent !== null) {
        timings.sendMs = performance.now() - sendStart;
        timings.totalMs = performance.now() - startedAt;
        result = sent === 'unchanged' ? { kind: 'unchanged' } : { kind: 'sent', timings };
      } else {
        Object.assign(timings, await installConfig(ctx, next.text, checkBeforeLoad));
        let pid: number | null = null;
        try {
          if (running()) Object.assign(timings, await reloadMaster(ctx, master!, next.version));
          else {
            const t = performance.now();
            pid = (await launch(ctx, next.version)).pid as number;
            timings.loadMs = performance.now() - t;
          }
        } catch (err) {
          doubt = err instanceof NginxApplyError && err.code === 'KR_NGINX_RELOAD_FAILED';
          if (liveText !== null) await writeFileAtomic(files.conf, liveText);
          throw err;
        }
        const m = master!;
        if (pid === null) {
          liveText = next.text;
          loaded = { configVersion: next.version, pid: m.pid as number };
        }
        const t = performance.now();
        try {
          await delivery!.send(table, { pid: m.pid as number });
        } catch (err) {
          // A fresh nginx holds no table in dynamic mode: it does not count as up before it takes one.
          if (pid !== null) await abandon(m);
          throw err;
        }
        liveText = next.text;
        timings.sendMs = performance.now() - t;
        timings.totalMs = performance.now() - startedAt;
        result =
          pid === null
            ? { kind: 'reloaded', configVersion: next.version, timings }
            : { kind: 'started', pid, configVersion: next.version, timings };
      }
      notify({ type: 'applied', table: n, result, at: at() });
      logApplied(result);
    } catch (err) {
      const error =
        err instanceof NginxApplyError ? err : new NginxApplyError('KR_NGINX_IO_FAILED', (err as Error).message);
      const failure = { code: error.code, message: scrub(error.message) };
      const controlLost = err instanceof ControlLostError;
      const extra = { controlLost, ...(loaded ? { loaded } : {}) };
      notify({ type: 'apply-failed', table: n, error: failure, doubt, running: running(), ...extra, at: at() });
      throw error;
    }
  }

  /**
   * Sends `table` to the running nginx. A master whose control socket was found gone by the
   * last apply too can take no table ever again (it does not bind the socket anew, not even
   * on a reload): it is retired like a leftover (it stops accepting, finishes its requests)
   * and null says a fresh master must be started in its place.
   */
  async function sendOrRetire(table: RouteTable): Promise<'sent' | 'unchanged' | null> {
    const m = master!;
    try {
      return await delivery!.send(table, { pid: m.pid as number });
    } catch (err) {
      if (!(err instanceof ControlLostError) || !state.controlLost) throw err;
      const self = await identify(m.pid as number);
      leftovers.add([...(self === null ? [] : [self]), ...(await groupMembers(m.pid as number))]);
      master = null;
      const fields = { pid: m.pid, err: scrub(err.message) };
      logger?.warn(fields, "nginx's control socket is still gone: a fresh nginx replaces it");
      return null;
    }
  }

  function logApplied(result: AppliedResult): void {
    if (result.kind === 'unchanged') {
      logger?.debug({ version: state.liveConfig }, 'nginx serves this table already: nothing to load or send');
      return;
    }
    const { timings } = result;
    const fields = {
      version: state.liveConfig,
      ms: Math.round(timings.totalMs),
      timings: roundTimings(timings),
      reloads: state.reloads,
    };
    if (result.kind === 'sent')
      logger?.info({ ...fields, table: delivery!.report().tableVersion }, 'nginx serves the new table');
    else logger?.info(fields, 'nginx serves the new config');
  }

  /** Stops a master just started that did not take its table; what a restart loads is the last good config again. */
  async function abandon(m: NginxMaster): Promise<void> {
    master = null;
    await m.stop({ gracefulMs: stopTimeouts.fastMs, fastMs: stopTimeouts.fastMs });
    if (liveText !== null) await writeFileAtomic(files.conf, liveText);
  }

  async function restartJob(): Promise<void> {
    if (!isOpen() || running() || liveText === null || state.liveConfig === null) {
      notify({ type: 'job-skipped' });
      return;
    }
    try {
      const ctx = loadContext(await prepare());
      // What a restart loads is the last good config, whatever an interrupted apply left.
      if (!checkBeforeLoad) await writeFileAtomic(files.conf, liveText);
      const m = await launch(ctx, state.liveConfig);
      const served = state.served === null ? undefined : tables.get(state.served);
      try {
        // A fresh nginx holds no table in dynamic mode: it gets it before it counts as up.
        if (served !== undefined) await delivery!.send(served, { pid: m.pid as number });
      } catch (err) {
        await abandon(m);
        throw err;
      }
      notify({ type: 'restarted', pid: m.pid as number, at: Date.now() });
      logger?.info({ pid: m.pid, version: state.liveConfig }, 'nginx restarted on the last good config');
    } catch (err) {
      logger?.error({ err: scrub((err as Error).message) }, 'nginx restart failed');
      notify({ type: 'restart-failed', at: Date.now() });
    }
  }

  async function stopJob(): Promise<void> {
    const m = master;
    master = null;
    errorLog?.stop();
    stopWatchingWorkers();
    // nginx's graceful stop (SIGQUIT): it stops accepting at once and lets requests in
    // flight finish within the grace; what masters left behind gets the same.
    await Promise.all([m?.stop(stopTimeouts), leftovers.finish(stopTimeouts.gracefulMs)]);
    await leftovers.finish(0);
    // The last lines nginx wrote as it stopped are read (and reported) too.
    await errorLog?.poll();
    notify({ type: 'stopped' });
  }

  let closing: Promise<void> | null = null;

  return {
    files,
    apply(table) {
      const n = ++tableCount;
      tables.set(n, table);
      for (const route of table.routes) if (route.apiKey !== null && route.apiKey !== '') apiKeys.add(route.apiKey);
      return dispatch({ type: 'apply', table: n }) as Promise<void>;
    },
    state: () => structuredClone(state),
    lastOutcome(): NginxOutcome {
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
        recentErrors: errors.recent.map((f) => ({ ...f, message: scrub(f.message) })),
      });
    },
    close() {
      closing ??= dispatch({ type: 'close' }) ?? Promise.resolve();
      return closing;
    },
  };
}

function roundTimings(timings: ApplyTimings): Record<keyof ApplyTimings, number> {
  const rounded = { ...timings };
  for (const key of Object.keys(rounded) as Array<keyof ApplyTimings>) rounded[key] = Math.round(rounded[key]);
  return rounded;
}
