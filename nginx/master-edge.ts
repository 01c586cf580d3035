import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { firstLines } from './check.js';
import { followErrorLog } from './error-log.js';
import { faultReporter } from './fault-reporter.js';
import { writeFileAtomic } from './files.js';
import { masterRuns, type Edge, type EdgeSetup, type EdgeState } from './edge-state.js';
import { startMaster, type LoadContext } from './load.js';
import type { NginxMaster } from './master.js';
import { staleNginx } from './stale.js';
import { pickFreeLoopbackPort } from './status.js';
import { nginxWorkerIdentity, prepareWorkerAccess } from './worker-user.js';
import { groupMembers, identify, shuttingDownWorkers } from './workers.js';

// The nginx manager's processes: what nginx needs before it first starts, a master
// started (after the ports are freed of processes no master manages) and followed until
// it exits, a master given up, and the watchers of nginx's error log and old workers.

/** nginx faults logged in one watch interval; the rest are counted, and summed up in one line. */
const FAULTS_LOGGED_PER_INTERVAL = 20;

export function loadContext(setup: EdgeSetup, statusPort: number): LoadContext {
  const { nginxBinary, prefix, files, confirmTimeoutMs, stopTimeouts, logger } = setup;
  return {
    nginxBinary,
    prefix,
    confPath: files.conf,
    errorLog: files.errorLog,
    statusPort,
    confirmTimeoutMs,
    stopTimeouts,
    ...(logger ? { logger } : {}),
  };
}

/** The directories nginx needs, its workers' way to them, the delivery, the watchers; returns the status port. */
export async function prepare(edge: Edge): Promise<number> {
  const { setup, live } = edge;
  if (!live.prepared) {
    await makeDirectories(setup);
    live.workerIdentity ??= await nginxWorkerIdentity();
    if (live.workerIdentity !== null) {
      const opened = await prepareWorkerAccess(setup.prefix, setup.files.tempDir, live.workerIdentity);
      if (opened.length > 0)
        setup.logger?.info(
          { user: live.workerIdentity.user, directories: opened },
          "let nginx's workers through to their temporary directory",
        );
    }
    await setup.delivery.prepare?.();
    await startWatchers(setup, live);
    live.prepared = true;
  }
  live.statusPort ??= await pickFreeLoopbackPort();
  return live.statusPort;
}

async function makeDirectories({ prefix, files }: EdgeSetup): Promise<void> {
  for (const dir of new Set([prefix, dirname(files.conf), dirname(files.pid), files.tempDir]))
    await mkdir(dir, { recursive: true });
  // nginx's logs are the router's to read: they name clients and what they asked for.
  for (const dir of new Set([dirname(files.errorLog), dirname(files.accessLog)]))
    await mkdir(dir, { recursive: true, mode: 0o700 });
}

async function startWatchers(setup: EdgeSetup, live: EdgeState): Promise<void> {
  const { logger, watchIntervalMs: intervalMs } = setup;
  const scrub = (text: string): string => live.secrets.scrub(text);
  const onFault = faultReporter({ logger, intervalMs, perInterval: FAULTS_LOGGED_PER_INTERVAL, scrub });
  live.errorLog ??= await followErrorLog(setup.files.errorLog, { onFault, intervalMs });
  live.workerWatch = setInterval(() => countOldWorkers(live), Math.max(intervalMs, 1_000));
  live.workerWatch.unref();
}

function countOldWorkers(live: EdgeState): void {
  const pid = live.master?.pid;
  if (pid === undefined || !masterRuns(live)) {
    live.workersShuttingDown = 0;
    return;
  }
  void shuttingDownWorkers(pid).then((workers) => {
    live.workersShuttingDown = workers.length;
  });
}

/** Stops following the error log and counting old workers. */
export function stopWatchers(live: EdgeState): void {
  live.errorLog?.stop();
  if (live.workerWatch !== null) clearInterval(live.workerWatch);
}

/** Frees the ports (processes of ours no running master manages stop accepting), then starts a master. */
export async function launch(edge: Edge, ctx: LoadContext, version: string): Promise<NginxMaster> {
  const { setup, live } = edge;
  setup.leftovers.add(await staleNginx(setup.files.pid, setup.prefix));
  const stray = await setup.leftovers.running();
  if (stray.length > 0) {
    setup.logger?.warn(
      { pids: stray.map((p) => p.pid) },
      'stopping nginx processes that no running master manages ' +
        '(left by a master that died, or by an earlier router)',
    );
    edge.notify({ type: 'leftovers-ended', count: await setup.leftovers.release() });
  }
  await setup.delivery.beforeStart?.();
  const m = await startMaster(ctx, version, (started) => follow(edge, started));
  live.master = m;
  setup.delivery.forget();
  return m;
}

/** Follows a master we started: keeps what it leaves behind, and reports an exit nobody asked for. */
function follow(edge: Edge, m: NginxMaster): void {
  const { setup, live } = edge;
  void m.exited.then((exit) => {
    setup.leftovers.add(exit.leftBehind);
    if (m !== live.master || m.stopping()) return;
    live.master = null;
    const output = firstLines(m.output());
    const { code, signal } = exit;
    setup.logger?.error(
      { pid: m.pid, code, signal, workersLeft: exit.leftBehind.length, output },
      'nginx exited unexpectedly',
    );
    // Its workers serve the last config until the restart needs the ports.
    edge.notify({ type: 'exited', pid: m.pid ?? null, ranMs: Date.now() - m.startedAt, at: Date.now() });
  });
}

/** Stops a master just started that did not take its table; what a restart loads is the last good config again. */
export async function abandon(edge: Edge, m: NginxMaster): Promise<void> {
  const { setup, live } = edge;
  live.master = null;
  const { fastMs } = setup.stopTimeouts;
  await m.stop({ gracefulMs: fastMs, fastMs });
  if (live.liveText !== null) await writeFileAtomic(setup.files.conf, live.liveText);
}

/**
 * Gives a running master up as a leftover: it and its workers stop accepting and finish
 * their requests when the ports are next freed, and a fresh master must be started.
 */
export async function retire(edge: Edge, m: NginxMaster): Promise<void> {
  const self = await identify(m.pid as number);
  edge.setup.leftovers.add([...(self === null ? [] : [self]), ...(await groupMembers(m.pid as number))]);
  edge.live.master = null;
}
