import { masterRuns, type Edge } from './edge-state.js';
import { writeFileAtomic } from './files.js';
import { isOpen } from './manager-state.js';
import { abandon, launch, loadContext, prepare, stopWatchers } from './master-edge.js';

// The jobs that start nginx again after it died and stop it for good. Each ends with an
// event for the state machine.

/** Starts nginx on the last good config, with the table it served, after it exited unexpectedly. */
export async function restartJob(edge: Edge): Promise<void> {
  const { setup, live } = edge;
  const { liveText, machine } = live;
  if (!isOpen(machine) || masterRuns(live) || liveText === null || machine.liveConfig === null) {
    edge.notify({ type: 'job-skipped' });
    return;
  }
  try {
    const ctx = loadContext(setup, await prepare(edge));
    // What a restart loads is the last good config, whatever an interrupted apply left.
    if (!setup.checkBeforeLoad) await writeFileAtomic(setup.files.conf, liveText);
    const m = await launch(edge, ctx, machine.liveConfig);
    const served = live.machine.served === null ? undefined : live.tables.get(live.machine.served);
    try {
      // A fresh nginx holds no table in dynamic mode: it gets it before it counts as up.
      if (served !== undefined) await setup.delivery.send(served, { pid: m.pid as number });
    } catch (err) {
      await abandon(edge, m);
      throw err;
    }
    edge.notify({ type: 'restarted', pid: m.pid as number, at: Date.now() });
    setup.logger?.info({ pid: m.pid, version: live.machine.liveConfig }, 'nginx restarted on the last good config');
  } catch (err) {
    setup.logger?.error({ err: live.secrets.scrub((err as Error).message) }, 'nginx restart failed');
    edge.notify({ type: 'restart-failed', at: Date.now() });
  }
}

/**
 * nginx's graceful stop (SIGQUIT): it stops accepting at once and lets requests in flight
 * finish within the grace; what masters left behind gets the same. The last lines nginx
 * wrote as it stopped are read (and reported) too.
 */
export async function stopJob(edge: Edge): Promise<void> {
  const { setup, live } = edge;
  const m = live.master;
  live.master = null;
  stopWatchers(live);
  const { stopTimeouts, leftovers } = setup;
  await Promise.all([m?.stop(stopTimeouts), leftovers.finish(stopTimeouts.gracefulMs)]);
  await leftovers.finish(0);
  await live.errorLog?.poll();
  edge.notify({ type: 'stopped' });
}
