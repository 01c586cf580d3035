import { randomBytes } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { DataPlane } from '../src/core/data-plane.js';
import type { RouteTable } from '../src/core/route-table.js';
import { checkNginxConfig, firstLines } from './check.js';
import { piecesOf, PieceHashes, withVersion, type ConfPieces } from './conf-pieces.js';
import { replaceFile, writeFileAtomic, writeSynced } from './files.js';
import { BackoffTimer, type Retry } from '../src/core/backoff.js';
export type { Retry } from '../src/core/backoff.js';
import { createLeftovers } from './leftovers.js';
import { staleNginx } from './stale.js';
import { spawnNginxMaster, type MasterExit, type NginxMaster, type StopTimeouts } from './master.js';
import type { NginxRuntime } from './render.js';
import { pickFreeLoopbackPort, waitForConfigVersion } from './status.js';
import { childrenOf, parentOf, waitForRetirement } from './workers.js';

// The nginx data plane: renders a table, has `nginx -t` check it, installs it atomically
// and has the running nginx load it (SIGHUP, a graceful reload), then reads the config
// version back from nginx's loopback status server, so `apply` resolves only once the
// new config serves. A refused config is never installed; a config nginx fails to load
// is taken off disk again, so the last good one keeps serving and is what a restart
// loads. A table nginx did not take is tried again on a timer (with backoff) until it is
// served or a newer table replaces it; an nginx that dies is restarted (with backoff),
// after the workers it left behind gave the ports back. One operation runs at a time.
//
// The retry lives here rather than in the controller: only this data plane can fail to
// take a table (the proxy swaps it in memory), it knows why and whether nginx itself is
// down (one place schedules both the retry and the restart), and lastOutcome() reports
// the pending retry to /status, /readyz and the metrics.

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
   * The config for a table, run by us with `runtime`'s files and status server: as text,
   * or as pieces (the incremental renderer's), hashed and written without being joined.
   */
  render: (table: RouteTable, runtime: NginxRuntime) => string | ConfPieces;
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
   * Whether each new config goes through `nginx -t` before nginx loads it (the default).
   * Without, nginx parses a new config once instead of twice: its own load is the check.
   */
  checkBeforeLoad?: boolean;
  /** How long nginx may take to start or reload before the attempt counts as failed. */
  confirmTimeoutMs?: number;
  stopTimeouts?: Partial<StopTimeouts>;
}

export type NginxErrorCode = 'CLOSED' | 'RENDER_FAILED' | 'CONFIG_REFUSED' | 'START_FAILED' | 'RELOAD_FAILED' | 'IO_FAILED';

export class NginxApplyError extends Error {
  constructor(
    readonly code: NginxErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'NginxApplyError';
  }
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
  totalMs: number;
}

export interface NginxFailure {
  code: NginxErrorCode;
  message: string;
}

/** What the last apply did and what nginx has done so far, for status, readiness and metrics. */
export interface NginxOutcome {
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
  /** Successful graceful reloads. */
  reloads: number;
  /** When nginx last started serving a new config (start, reload or restart), ms since the epoch. */
  lastLoadedAt: number | null;
  /** Applies that found the config unchanged and left nginx alone. */
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
  /** The nginx master's pid while it runs. */
  pid: number | null;
}

export interface NginxDataPlane extends DataPlane {
  lastOutcome(): NginxOutcome;
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

export function resolveFiles(prefix: string, overrides: Partial<NginxFiles> = {}): NginxFiles {
  return {
    conf: overrides.conf ?? join(prefix, 'nginx.conf'),
    pid: overrides.pid ?? join(prefix, 'nginx.pid'),
    errorLog: overrides.errorLog ?? join(prefix, 'logs', 'error.log'),
    accessLog: overrides.accessLog ?? join(prefix, 'logs', 'access.log'),
    tempDir: overrides.tempDir ?? join(prefix, 'temp'),
  };
}

function describeExit(exit: MasterExit): string {
  if (exit.error) return `nginx could not be started: ${exit.error.message}`;
  return exit.signal ? `nginx exited on ${exit.signal}` : `nginx exited with status ${exit.code}`;
}

async function fileSize(path: string): Promise<number> {
  try {
    const file = await open(path, 'r');
    try {
      return (await file.stat()).size;
    } finally {
      await file.close();
    }
  } catch {
    return 0;
  }
}

/** What nginx appended to its error log since `offset` (at most the last 4 KiB). */
async function logSince(path: string, offset: number): Promise<string> {
  try {
    const file = await open(path, 'r');
    try {
      const size = (await file.stat()).size;
      const start = Math.max(offset, size - 4096);
      const buffer = Buffer.alloc(Math.max(0, size - start));
      await file.read(buffer, 0, buffer.length, start);
      return buffer.toString('utf8').trim();
    } finally {
      await file.close();
    }
  } catch {
    return '';
  }
}

/** Marks where a render puts the version, replaced by the hash of the text around it. */
const VERSION_PLACEHOLDER = `v${randomBytes(12).toString('hex')}`;

export function createNginxDataPlane(options: NginxDataPlaneOptions): NginxDataPlane {
  const { nginxBinary, prefix, render, logger } = options;
  const checkBeforeLoad = options.checkBeforeLoad ?? true;
  const files = resolveFiles(prefix, options.files);
  const confirmTimeoutMs = options.confirmTimeoutMs ?? 10_000;
  const stopTimeouts: StopTimeouts = { gracefulMs: 10_000, fastMs: 3_000, ...options.stopTimeouts };
  const restartBackoff = { initialMs: 100, maxMs: 5_000, ...options.restartBackoffMs };
  const retryBackoff = { initialMs: 1_000, maxMs: 30_000, ...options.retryBackoffMs };
  const leftovers = createLeftovers({ quitMs: LEFTOVER_QUIT_MS, graceMs: stopTimeouts.gracefulMs });

  let statusPort: number | null = options.statusPort ?? null;
  let master: NginxMaster | null = null;
  /** The last config nginx confirmed: what is on disk, and what a restart loads. */
  let live: VersionedConfig | null = null;
  /**
   * False after a reload that failed in a way that leaves doubt (nginx may still have
   * loaded the new config, e.g. a bind that succeeded on nginx's own retry): the next
   * apply then reloads even an unchanged config, so what nginx serves is known again.
   */
  let liveConfirmed = false;
  /** The last table given to apply(): what nginx should serve. */
  let desired: RouteTable | null = null;
  let closed = false;
  let closing: Promise<void> | null = null;
  const restartTimer = new BackoffTimer(restartBackoff.initialMs, restartBackoff.maxMs);
  const retryTimer = new BackoffTimer(retryBackoff.initialMs, retryBackoff.maxMs);
  let candidateSeq = 0;
  let queue: Promise<unknown> = Promise.resolve();
  const outcome: NginxOutcome = {
    ok: null,
    error: null,
    since: null,
    lastError: null,
    behind: false,
    retry: null,
    restart: null,
    configVersion: null,
    reloads: 0,
    lastLoadedAt: null,
    unchanged: 0,
    failures: 0,
    unexpectedExits: 0,
    restarts: 0,
    leftoversEnded: 0,
    lastApplyMs: null,
    lastApplyTimings: null,
    pid: null,
  };

  /** Runs jobs one after the other, whatever became of the one before. */
  function serialize<T>(job: () => Promise<T>): Promise<T> {
    const run = queue.then(job, job);
    queue = run.catch(() => undefined);
    return run;
  }

  const running = (): boolean => master !== null && master.exit() === null;

  function recordSuccess(): void {
    if (outcome.ok !== true) outcome.since = Date.now();
    Object.assign(outcome, { ok: true, error: null });
  }

  function recordFailure(error: NginxApplyError): void {
    const now = Date.now();
    if (outcome.ok !== false) outcome.since = now;
    const failure = { code: error.code, message: error.message };
    Object.assign(outcome, { ok: false, error: failure, lastError: { ...failure, at: now }, failures: outcome.failures + 1 });
  }

  async function prepare(): Promise<number> {
    for (const dir of new Set([prefix, dirname(files.conf), dirname(files.pid), dirname(files.errorLog), dirname(files.accessLog), files.tempDir])) {
      await mkdir(dir, { recursive: true });
    }
    statusPort ??= await pickFreeLoopbackPort();
    return statusPort;
  }

  /** The hash of each piece of the configs rendered, kept while the piece is. */
  const hashes = new PieceHashes();

  /**
   * Renders the table with a version that is a hash of the config itself, so the same
   * table gives the same version and an unchanged config is recognised without a reload.
   * One render: the version goes where the render put a placeholder (a plain word nothing
   * else in a config can contain: it is random). The pieces of the config are hashed and
   * written as they are; only the one that holds the version is copied.
   */
  function renderVersioned(table: RouteTable, port: number): VersionedConfig {
    let draft: ConfPieces;
    try {
      draft = piecesOf(
        render(table, {
          pidFile: files.pid,
          errorLog: files.errorLog,
          accessLog: files.accessLog,
          tempDir: files.tempDir,
          status: { port, configVersion: VERSION_PLACEHOLDER },
        }),
      );
    } catch (err) {
      throw new NginxApplyError('RENDER_FAILED', `cannot render nginx.conf: ${(err as Error).message}`);
    }
    const versioned = withVersion(draft, VERSION_PLACEHOLDER, hashes);
    if (versioned === null) throw new NginxApplyError('RENDER_FAILED', 'the rendered nginx.conf has no status server');
    return versioned;
  }

  /**
   * Checks `text` with `nginx -t` next to the live config, then puts it in its place.
   * Without the check, the reload (or start) that follows is the check: nginx keeps its
   * previous config when it cannot load a new one, and the caller puts the previous file back.
   */
  async function install(text: ConfPieces, timings: ApplyTimings): Promise<void> {
    const candidate = `${files.conf}.candidate-${process.pid}-${++candidateSeq}`;
    try {
      let t = performance.now();
      await writeSynced(candidate, text);
      timings.writeMs = performance.now() - t;
      if (checkBeforeLoad) {
        t = performance.now();
        const verdict = await checkNginxConfig({ nginxBinary, prefix, confPath: candidate });
        timings.checkMs = performance.now() - t;
        if (!verdict.ok) throw new NginxApplyError('CONFIG_REFUSED', `nginx refused the config: ${firstLines(verdict.output)}`);
      }
      await replaceFile(candidate, files.conf);
    } finally {
      await rm(candidate, { force: true });
    }
  }

  /** Follows a master we started: keeps what it leaves behind, and restarts it if it dies serving. */
  function watchExit(m: NginxMaster): void {
    void m.exited.then((exit) => {
      leftovers.add(exit.leftBehind);
      if (m !== master || m.stopping()) return;
      master = null;
      outcome.pid = null;
      outcome.unexpectedExits++;
      logger?.error(
        { pid: m.pid, code: exit.code, signal: exit.signal, workersLeft: exit.leftBehind.length, output: firstLines(m.output()) },
        'nginx exited unexpectedly',
      );
      // Its workers serve the last config until the restart needs the ports.
      if (Date.now() - m.startedAt > RESTART_STABLE_MS) restartTimer.reset();
      scheduleRestart();
    });
  }

  /** Frees the ports: processes of ours no running master manages stop accepting. */
  async function releaseLeftovers(): Promise<void> {
    leftovers.add(await staleNginx(files.pid, prefix));
    const running = await leftovers.running();
    if (running.length === 0) return;
    logger?.warn({ pids: running.map((p) => p.pid) }, 'stopping nginx processes that no running master manages (left by a master that died, or by an earlier router)');
    outcome.leftoversEnded += await leftovers.release();
  }

  /** Starts nginx on the installed config and waits until it serves `version`. */
  async function start(version: string, port: number): Promise<void> {
    await releaseLeftovers();
    const logOffset = await fileSize(files.errorLog);
    const m = spawnNginxMaster({
      nginxBinary,
      prefix,
      confPath: files.conf,
      errorLog: files.errorLog,
      onOutput: (line) => logger?.warn({ nginx: line }, 'nginx output'),
    });
    watchExit(m);
    logger?.debug({ pid: m.pid }, 'nginx started; waiting for it to serve its config');
    try {
      await waitForConfigVersion(port, version, {
        timeoutMs: confirmTimeoutMs,
        isOurWorker: async (pid) => m.pid !== undefined && (await parentOf(pid)) === m.pid,
        gaveUp: () => {
          const exit = m.exit();
          return exit === null ? null : describeExit(exit);
        },
      });
    } catch (err) {
      // It never served for sure: no long graceful stop. What it leaves behind is ended
      // before the next start.
      await m.stop({ gracefulMs: stopTimeouts.fastMs, fastMs: stopTimeouts.fastMs });
      const detail = firstLines([await logSince(files.errorLog, logOffset), m.output().trim()].filter(Boolean).join('\n'));
      throw new NginxApplyError('START_FAILED', `nginx did not start: ${(err as Error).message}${detail ? `\n${detail}` : ''}`);
    }
    master = m;
    outcome.pid = m.pid ?? null;
    outcome.lastLoadedAt = Date.now();
  }

  /** Has the running nginx load the installed config and waits until only it serves. */
  async function reload(m: NginxMaster, version: string, port: number, timings: ApplyTimings): Promise<void> {
    const logOffset = await fileSize(files.errorLog);
    const pid = m.pid as number;
    const oldWorkers = await childrenOf(pid);
    let t = performance.now();
    m.signal('SIGHUP');
    try {
      await waitForConfigVersion(port, version, {
        timeoutMs: confirmTimeoutMs,
        isOurWorker: async (worker) => (await parentOf(worker)) === pid,
        gaveUp: async () => {
          const exit = m.exit();
          if (exit !== null) return `${describeExit(exit)} during the reload`;
          // An [emerg] means the master keeps its old config; no need to wait out the timeout.
          const emerg = (await logSince(files.errorLog, logOffset)).split('\n').find((line) => line.includes('[emerg]'));
          return emerg === undefined ? null : 'the reload failed';
        },
      });
    } catch (err) {
      const detail = firstLines(await logSince(files.errorLog, logOffset));
      throw new NginxApplyError('RELOAD_FAILED', `nginx did not load the config: ${(err as Error).message}${detail ? `\n${detail}` : ''}`);
    }
    timings.loadMs = performance.now() - t;
    outcome.lastLoadedAt = Date.now();
    t = performance.now();
    const stillAccepting = await waitForRetirement(oldWorkers, confirmTimeoutMs);
    timings.retireMs = performance.now() - t;
    if (stillAccepting.length > 0) {
      logger?.warn({ pids: stillAccepting.map((w) => w.pid) }, 'old nginx workers still accept connections after the reload');
    }
  }

  async function applyNow(table: RouteTable): Promise<void> {
    if (closed) throw new NginxApplyError('CLOSED', 'the nginx data plane is closed');
    const startedAt = performance.now();
    const timings: ApplyTimings = { renderMs: 0, writeMs: 0, checkMs: 0, loadMs: 0, retireMs: 0, totalMs: 0 };
    try {
      const port = await prepare();
      const next = renderVersioned(table, port);
      timings.renderMs = performance.now() - startedAt;
      if (live !== null && liveConfirmed && next.version === live.version && running()) {
        outcome.unchanged++;
        served(table);
        logger?.debug({ version: next.version }, 'nginx config unchanged: no reload');
        return;
      }
      await install(next.text, timings);
      try {
        if (master !== null && running()) {
          await reload(master, next.version, port, timings);
          outcome.reloads++;
        } else {
          restartTimer.cancel();
          const t = performance.now();
          await start(next.version, port);
          timings.loadMs = performance.now() - t;
        }
      } catch (err) {
        if (err instanceof NginxApplyError && err.code === 'RELOAD_FAILED') liveConfirmed = false;
        if (live !== null) {
          await writeFileAtomic(files.conf, live.text);
          if (!running()) scheduleRestart();
        }
        throw err;
      }
      live = next;
      liveConfirmed = true;
      timings.totalMs = performance.now() - startedAt;
      Object.assign(outcome, { configVersion: next.version, lastApplyMs: timings.totalMs, lastApplyTimings: timings });
      served(table);
      logger?.info(
        { version: next.version, ms: Math.round(timings.totalMs), timings: roundTimings(timings), reloads: outcome.reloads },
        'nginx serves the new config',
      );
    } catch (err) {
      const error = err instanceof NginxApplyError ? err : new NginxApplyError('IO_FAILED', (err as Error).message);
      if (error.code !== 'CLOSED') {
        recordFailure(error);
        logger?.error({ code: error.code, err: error.message }, 'nginx kept its previous config');
      }
      throw error;
    }
  }

  /** nginx serves `table`: if it is the one asked for last, nothing is left to try again. */
  function served(table: RouteTable): void {
    recordSuccess();
    if (table !== desired) return;
    retryTimer.cancel();
    retryTimer.reset();
    outcome.behind = false;
  }

  /** Tries `table` again later, unless a newer table comes first. */
  function scheduleRetry(table: RouteTable): void {
    if (closed || table !== desired) return;
    const { attempt, nextAt } = retryTimer.schedule(() => {
      void serialize(async () => {
        if (!closed && table === desired) await applyNow(table);
      }).catch(() => scheduleRetry(table));
    });
    logger?.warn({ attempt, inMs: nextAt - Date.now() }, 'trying the table nginx did not take again later');
  }

  function scheduleRestart(): void {
    if (closed || live === null || restartTimer.pending() !== null) return;
    const { attempt, nextAt } = restartTimer.schedule(() => void serialize(restartNow));
    logger?.info({ inMs: nextAt - Date.now(), attempt }, 'restarting nginx');
  }

  async function restartNow(): Promise<void> {
    if (closed || running() || live === null || statusPort === null) return;
    try {
      // What a restart loads is the last good config, whatever an interrupted apply left.
      if (!checkBeforeLoad) await writeFileAtomic(files.conf, live.text);
      await start(live.version, statusPort);
      liveConfirmed = true;
      outcome.restarts++;
      logger?.info({ pid: outcome.pid, version: live.version }, 'nginx restarted on the last good config');
    } catch (err) {
      logger?.error({ err: (err as Error).message }, 'nginx restart failed');
      scheduleRestart();
    }
  }

  return {
    files,
    apply(table) {
      desired = table;
      outcome.behind = true;
      retryTimer.cancel();
      const run = serialize(() => applyNow(table));
      run.catch((err: unknown) => {
        if (!(err instanceof NginxApplyError && err.code === 'CLOSED')) scheduleRetry(table);
      });
      return run;
    },
    lastOutcome: () => structuredClone({ ...outcome, retry: retryTimer.pending(), restart: restartTimer.pending() }),
    close() {
      closing ??= (async () => {
        closed = true;
        restartTimer.cancel();
        retryTimer.cancel();
        await serialize(async () => {
          restartTimer.cancel();
          retryTimer.cancel();
          const m = master;
          master = null;
          outcome.pid = null;
          // nginx's graceful stop (SIGQUIT): it stops accepting at once and lets requests
          // in flight finish within the grace; what masters left behind gets the same.
          await Promise.all([m?.stop(stopTimeouts), leftovers.finish(stopTimeouts.gracefulMs)]);
          await leftovers.finish(0);
        });
      })();
      return closing;
    },
  };
}

function roundTimings(timings: ApplyTimings): Record<keyof ApplyTimings, number> {
  const rounded = { ...timings };
  for (const key of Object.keys(rounded) as Array<keyof ApplyTimings>) rounded[key] = Math.round(rounded[key]);
  return rounded;
}
