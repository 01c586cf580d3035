import { readFile } from 'node:fs/promises';
import { commandLine, groupMembers, identify, type ProcessIdentity } from './workers.js';

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
  if (title === null || !title.startsWith('nginx: master process ') || !`${title} `.includes(` -p ${prefix} `))
    return null;
  return pid;
}

/** That master and its workers (its process group, which it leads), or [] when there is none. */
export async function staleNginx(pidFile: string, prefix: string): Promise<ProcessIdentity[]> {
  const pid = await staleMasterPid(pidFile, prefix);
  if (pid === null) return [];
  const master = await identify(pid);
  return master === null ? [] : [master, ...(await groupMembers(pid))];
}
