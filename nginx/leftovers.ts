import { setTimeout as sleep } from 'node:timers/promises';
import { signalProcess, stillRuns, waitForRetirement, type ProcessIdentity } from './workers.js';

// nginx processes of ours that no running master manages any more: the workers of a
// master that died (killed outright, they keep its listening sockets and serve its config
// forever), or the master an earlier router left behind. They must give the ports back
// before a new master can bind them, and must not outlive the router.
//
// They are known by pid and start time, taken when we could still tell they were ours
// (the group of a master we spawned, read as it exited; a master named in our pid file
// with our prefix), and are signalled only while that pid still names the same process.

export interface LeftoverTimeouts {
  /** How long a process may take to stop accepting after SIGQUIT before it is killed. */
  quitMs: number;
  /** How long it may then finish the requests it has (SIGQUIT is nginx's graceful stop). */
  graceMs: number;
}

export interface Leftovers {
  add(processes: readonly ProcessIdentity[]): void;
  /** Those still running. */
  running(): Promise<ProcessIdentity[]>;
  /**
   * Asks every leftover to stop accepting and finish what it serves (SIGQUIT), kills those
   * that still accept after `quitMs`, and those still finishing after `graceMs`. Resolves
   * once none accepts connections (the ports are free); returns how many it signalled.
   */
  release(): Promise<number>;
  /** release(), then waits until all are gone, killing what remains after `graceMs`. */
  finish(graceMs: number): Promise<void>;
}

export function createLeftovers(timeouts: LeftoverTimeouts): Leftovers {
  const known = new Map<string, ProcessIdentity>();
  const quitSent = new Set<string>();
  const keyOf = (p: ProcessIdentity): string => `${p.pid}@${p.startTime}`;

  async function running(): Promise<ProcessIdentity[]> {
    const alive: ProcessIdentity[] = [];
    for (const [key, p] of known) {
      if (await stillRuns(p)) alive.push(p);
      else {
        known.delete(key);
        quitSent.delete(key);
      }
    }
    return alive;
  }

  async function kill(processes: readonly ProcessIdentity[]): Promise<void> {
    for (const p of processes) await signalProcess(p, 'SIGKILL');
  }

  return {
    add(processes) {
      for (const p of processes) known.set(keyOf(p), p);
    },
    running,
    async release() {
      const alive = await running();
      const fresh = alive.filter((p) => !quitSent.has(keyOf(p)));
      for (const p of fresh) {
        if (await signalProcess(p, 'SIGQUIT')) quitSent.add(keyOf(p));
      }
      // A worker retitles itself "shutting down" once it closed its listening sockets.
      await kill(await waitForRetirement(alive, timeouts.quitMs));
      if (fresh.length > 0) {
        // Requests in flight get the grace nginx's own graceful stop gives them, no more.
        const deadline = setTimeout(() => void kill(fresh), timeouts.graceMs);
        deadline.unref();
      }
      return fresh.length;
    },
    async finish(graceMs) {
      await this.release();
      const deadline = Date.now() + graceMs;
      while ((await running()).length > 0 && Date.now() < deadline) await sleep(20);
      await kill(await running());
      while ((await running()).length > 0 && Date.now() < deadline + 1_000) await sleep(10);
    },
  };
}
