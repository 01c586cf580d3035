import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { StopTimeouts } from './master.js';
import { commandLine } from './workers.js';

// nginx runs in a process group of its own, so a router killed outright (OOM, SIGKILL)
// leaves its nginx serving and holding the port; the restarted router could then never
// start nginx. Before starting, the manager retires such a leftover, and only one that is
// provably ours: the master named in our pid file, running with our prefix.

/** The pid of an nginx master left running on `prefix` by an earlier run, or null. */
export async function staleMasterPid(pidFile: string, prefix: string): Promise<number | null> {
  let pid: number;
  try {
    pid = Number((await readFile(pidFile, 'utf8')).trim());
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 1) return null;
  const title = await commandLine(pid);
  // nginx retitles its master "nginx: master process " followed by the arguments we gave.
  if (title === null || !title.startsWith('nginx: master process ') || !`${title} `.includes(` -p ${prefix} `)) return null;
  return pid;
}

function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!gone(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
  return true;
}

/** Stops the master and its workers (its process group): gracefully, then faster, then outright. */
export async function retireStaleMaster(pid: number, timeouts: StopTimeouts): Promise<void> {
  for (const [signal, ms] of [
    ['SIGQUIT', timeouts.gracefulMs],
    ['SIGTERM', timeouts.fastMs],
    ['SIGKILL', timeouts.fastMs],
  ] as const) {
    try {
      process.kill(-pid, signal);
    } catch {
      return; // the group is gone already
    }
    if (await waitGone(pid, ms)) return;
  }
}
