import { applyJob } from './apply-job.js';
import type { Edge, EdgeSetup, EdgeState } from './edge-state.js';
import { createJobQueue, type JobQueue } from './job-queue.js';
import {
  transition,
  type Effect,
  type ManagerEvent,
  type ManagerSettings,
  type ManagerTimer,
} from './manager-state.js';
import { createManagerTimers, type ManagerTimers } from './manager-timers.js';
import { restartJob, stopJob } from './restart-stop-jobs.js';

// The one way into the nginx manager's edge: an event goes to the transition function,
// the state it returns replaces the old one, and each effect it asks for is run here: a job
// queued (one at a time), a timer set or cancelled, a line logged. Jobs and timers end in
// events again.

/** The edge that `setup` and `live` make, its events taken by the state machine with `settings`. */
export function createEdge(setup: EdgeSetup, live: EdgeState, settings: ManagerSettings): Edge {
  const edge: Edge = {
    setup,
    live,
    dispatch(event) {
      const next = transition(live.machine, event, settings);
      live.machine = next.state;
      let job: Promise<void> | undefined;
      for (const effect of next.effects) job = perform(effect) ?? job;
      forgetUnnamedTables(live);
      return job;
    },
    notify(event) {
      void edge.dispatch(event)?.catch(() => undefined);
    },
  };
  const queue = createJobQueue((job) => edge.notify({ type: 'job-started', job }));
  const timers = createManagerTimers((timer) => edge.notify(dueEvent(timer)));
  const perform = (effect: Effect): Promise<void> | undefined => performEffect(edge, queue, timers, effect);
  return edge;
}

function dueEvent(timer: ManagerTimer): ManagerEvent {
  return { type: timer === 'retry' ? 'retry-due' : 'restart-due', at: Date.now() };
}

/** Runs one effect; returns the job it queued that a caller may wait for. */
function performEffect(edge: Edge, queue: JobQueue, timers: ManagerTimers, effect: Effect): Promise<void> | undefined {
  switch (effect.type) {
    case 'run-apply': {
      const table = edge.live.tables.get(effect.table);
      if (table === undefined) return undefined;
      return queue.run('apply', () => applyJob(edge, effect.table, table));
    }
    case 'run-restart':
      // Nobody waits for a restart: it reports its failure as an event.
      void queue.run('restart', () => restartJob(edge)).catch(() => undefined);
      return undefined;
    case 'run-stop':
      return queue.run('stop', () => stopJob(edge));
    case 'set-timer':
      timers.set(effect.timer, effect.delayMs);
      return undefined;
    case 'cancel-timer':
      timers.cancel(effect.timer);
      return undefined;
    case 'log':
      edge.setup.logger?.[effect.level](effect.fields, effect.message);
      return undefined;
  }
}

/** Drops the tables the state no longer names: only the desired and the served one are kept. */
function forgetUnnamedTables(live: EdgeState): void {
  const { desired, served } = live.machine;
  for (const n of live.tables.keys()) if (n !== desired && n !== served) live.tables.delete(n);
}
