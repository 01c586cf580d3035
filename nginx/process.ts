import { createHash } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { DataPlane } from '../src/core/data-plane.js';
import type { RouteTable } from '../src/core/route-table.js';
import { checkNginxConfig, firstLines } from './check.js';
import { replaceFile, writeFileAtomic, writeSynced } from './files.js';
import { retireStaleMaster, staleMasterPid } from './stale.js';
import { spawnNginxMaster, type MasterExit, type NginxMaster, type StopTimeouts } from './master.js';
import type { NginxRuntime } from './render.js';
import { pickFreeLoopbackPort, waitForConfigVersion } from './status.js';
import { childrenOf, parentOf, waitForRetirement } from './workers.js';

// The nginx data plane: renders a table, has `nginx -t` check it, installs it atomically
// and has the running nginx load it (SIGHUP, a graceful reload), then reads the config
// version back from nginx's loopback status server, so `apply` resolves only once the
// new config serves. A refused config is never installed; a config nginx fails to load
// is taken off disk again, so the last good one keeps serving and is what a restart
// loads. One operation runs at a time.

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
  /** The config for a table, run by us with `runtime`'s files and status server. */
  render: (table: RouteTable, runtime: NginxRuntime) => string;
  files?: Partial<NginxFiles>;
  /** Loopback port of the status server; a free one is picked when absent. */
  statusPort?: number;
  logger?: Logger;
  /** Delay before restarting an nginx that exited unexpectedly, doubling up to `maxMs`. */
  restartBackoffMs?: { initialMs?: number; maxMs?: number };
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

/** What the last apply did and what nginx has done so far, for status and metrics. */
export interface NginxOutcome {
  /** Whether the last apply succeeded; null before the first one. */
  ok: boolean | null;
  error: { code: NginxErrorCode; message: string } | null;
  /** The version of the config nginx serves (a hash of its text), null before the first success. */
  configVersion: string | null;
  /** Successful graceful reloads. */
  reloads: number;
  /** Applies that found the config unchanged and left nginx alone. */
  unchanged: number;
  /** Applies that failed. */
  failures: number;
  /** Times nginx exited without being asked to. */
  unexpectedExits: number;
  /** Successful restarts after such an exit. */
  restarts: number;
  /** How long the last apply took, from render to confirmed. */
  lastApplyMs: number | null;
  /** The nginx master's pid while it runs. */
  pid: number | null;
}

export interface NginxDataPlane extends DataPlane {
  lastOutcome(): NginxOutcome;
  /** The files nginx uses, e.g. to read its error log. */
  readonly files: NginxFiles;
}

interface VersionedConfig {
  text: string;
  version: string;
}

const RESTART_STABLE_MS = 10_000;

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

export function createNginxDataPlane(options: NginxDataPlaneOptions): NginxDataPlane {
  const { nginxBinary, prefix, render, logger } = options;
  const files = resolveFiles(prefix, options.files);
  const confirmTimeoutMs = options.confirmTimeoutMs ?? 10_000;
  const stopTimeouts: StopTimeouts = { gracefulMs: 10_000, fastMs: 3_000, ...options.stopTimeouts };
  const initialBackoffMs = options.restartBackoffMs?.initialMs ?? 100;
  const maxBackoffMs = options.restartBackoffMs?.maxMs ?? 5_000;

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
  let closed = false;
  let closing: Promise<void> | null = null;
  let restartTimer: NodeJS.Timeout | null = null;
  let backoffMs = initialBackoffMs;
  let candidateSeq = 0;
  let queue: Promise<unknown> = Promise.resolve();
  const outcome: NginxOutcome = {
    ok: null,
    error: null,
    configVersion: null,
    reloads: 0,
    unchanged: 0,
    failures: 0,
    unexpectedExits: 0,
    restarts: 0,
    lastApplyMs: null,
    pid: null,
  };

  /** Runs jobs one after the other, whatever became of the one before. */
  function serialize<T>(job: () => Promise<T>): Promise<T> {
    const run = queue.then(job, job);
    queue = run.catch(() => undefined);
    return run;
  }

  const running = (): boolean => master !== null && master.exit() === null;

  async function prepare(): Promise<number> {
    for (const dir of new Set([prefix, dirname(files.conf), dirname(files.pid), dirname(files.errorLog), dirname(files.accessLog), files.tempDir])) {
      await mkdir(dir, { recursive: true });
    }
    statusPort ??= await pickFreeLoopbackPort();
    return statusPort;
  }

  /**
   * Renders the table with a version that is a hash of the config itself, so the same
   * table gives the same version and an unchanged config is recognised without a reload.
   */
  function renderVersioned(table: RouteTable, port: number): VersionedConfig {
    const runtime = (configVersion: string): NginxRuntime => ({
      pidFile: files.pid,
      errorLog: files.errorLog,
      accessLog: files.accessLog,
      tempDir: files.tempDir,
      status: { port, configVersion },
    });
    try {
      const draft = render(table, runtime('unversioned'));
      const version = createHash('sha256').update(draft).digest('hex').slice(0, 16);
      return { text: render(table, runtime(version)), version };
    } catch (err) {
      throw new NginxApplyError('RENDER_FAILED', `cannot render nginx.conf: ${(err as Error).message}`);
    }
  }

  /** Checks `text` with `nginx -t` next to the live config, then puts it in its place. */
  async function install(text: string): Promise<void> {
    const candidate = `${files.conf}.candidate-${process.pid}-${++candidateSeq}`;
    try {
      await writeSynced(candidate, text);
      const verdict = await checkNginxConfig({ nginxBinary, prefix, confPath: candidate });
      if (!verdict.ok) throw new NginxApplyError('CONFIG_REFUSED', `nginx refused the config: ${firstLines(verdict.output)}`);
      await replaceFile(candidate, files.conf);
    } finally {
      await rm(candidate, { force: true });
    }
  }

  function onMasterExit(m: NginxMaster, exit: MasterExit): void {
    if (m !== master || m.stopping()) return;
    master = null;
    outcome.pid = null;
    outcome.unexpectedExits++;
    logger?.error({ pid: m.pid, code: exit.code, signal: exit.signal, output: firstLines(m.output()) }, 'nginx exited unexpectedly');
    // Workers of a master killed outright keep its listening sockets and the old config:
    // ask them to stop accepting and finish what they are serving, or the restart cannot bind.
    m.signalGroup('SIGQUIT');
    if (Date.now() - m.startedAt > RESTART_STABLE_MS) backoffMs = initialBackoffMs;
    scheduleRestart();
  }

  /** Starts nginx on the installed config and waits until it serves `version`. */
  async function start(version: string, port: number): Promise<void> {
    const stale = await staleMasterPid(files.pid, prefix);
    if (stale !== null) {
      logger?.warn({ pid: stale, prefix }, 'stopping the nginx an earlier run of the router left running on this prefix');
      await retireStaleMaster(stale, stopTimeouts);
    }
    const logOffset = await fileSize(files.errorLog);
    const m = spawnNginxMaster({
      nginxBinary,
      prefix,
      confPath: files.conf,
      errorLog: files.errorLog,
      onOutput: (line) => logger?.warn({ nginx: line }, 'nginx output'),
    });
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
      await m.stop(stopTimeouts);
      const detail = firstLines([await logSince(files.errorLog, logOffset), m.output().trim()].filter(Boolean).join('\n'));
      throw new NginxApplyError('START_FAILED', `nginx did not start: ${(err as Error).message}${detail ? `\n${detail}` : ''}`);
    }
    // Watch for exits only once it served: a start that fails is reported by its caller.
    master = m;
    outcome.pid = m.pid ?? null;
    void m.exited.then((exit) => onMasterExit(m, exit));
  }

  /** Has the running nginx load the installed config and waits until only it serves. */
  async function reload(m: NginxMaster, version: string, port: number): Promise<void> {
    const logOffset = await fileSize(files.errorLog);
    const pid = m.pid as number;
    const oldWorkers = await childrenOf(pid);
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
    const stillAccepting = await waitForRetirement(oldWorkers, confirmTimeoutMs);
    if (stillAccepting.length > 0) {
      logger?.warn({ pids: stillAccepting.map((w) => w.pid) }, 'old nginx workers still accept connections after the reload');
    }
  }

  async function applyNow(table: RouteTable): Promise<void> {
    if (closed) throw new NginxApplyError('CLOSED', 'the nginx data plane is closed');
    const startedAt = performance.now();
    try {
      const port = await prepare();
      const next = renderVersioned(table, port);
      if (live !== null && liveConfirmed && next.version === live.version && running()) {
        outcome.unchanged++;
        Object.assign(outcome, { ok: true, error: null });
        logger?.debug({ version: next.version }, 'nginx config unchanged: no reload');
        return;
      }
      await install(next.text);
      try {
        if (master !== null && running()) {
          await reload(master, next.version, port);
          outcome.reloads++;
        } else {
          cancelRestart();
          await start(next.version, port);
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
      Object.assign(outcome, { ok: true, error: null, configVersion: next.version, lastApplyMs: performance.now() - startedAt });
      logger?.info({ version: next.version, ms: Math.round(outcome.lastApplyMs ?? 0), reloads: outcome.reloads }, 'nginx serves the new config');
    } catch (err) {
      const error = err instanceof NginxApplyError ? err : new NginxApplyError('IO_FAILED', (err as Error).message);
      if (error.code !== 'CLOSED') {
        Object.assign(outcome, { ok: false, error: { code: error.code, message: error.message }, failures: outcome.failures + 1 });
        logger?.error({ code: error.code, err: error.message }, 'nginx kept its previous config');
      }
      throw error;
    }
  }

  function cancelRestart(): void {
    if (restartTimer !== null) clearTimeout(restartTimer);
    restartTimer = null;
  }

  function scheduleRestart(): void {
    if (closed || restartTimer !== null || live === null) return;
    const delay = backoffMs;
    backoffMs = Math.min(backoffMs * 2, maxBackoffMs);
    logger?.info({ inMs: delay }, 'restarting nginx');
    restartTimer = setTimeout(() => {
      restartTimer = null;
      void serialize(restartNow);
    }, delay);
  }

  async function restartNow(): Promise<void> {
    if (closed || running() || live === null || statusPort === null) return;
    try {
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
    apply: (table) => serialize(() => applyNow(table)),
    lastOutcome: () => ({ ...outcome, error: outcome.error && { ...outcome.error } }),
    close() {
      closing ??= (async () => {
        closed = true;
        cancelRestart();
        await serialize(async () => {
          cancelRestart();
          const m = master;
          master = null;
          outcome.pid = null;
          if (m !== null) await m.stop(stopTimeouts);
        });
      })();
      return closing;
    },
  };
}
