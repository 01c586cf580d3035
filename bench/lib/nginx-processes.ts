import { readFile } from 'node:fs/promises';
import { childrenOf, identify, type ProcessIdentity } from '../../nginx/workers.js';

// nginx's processes as /proc shows them (Linux): the master and its children, each known
// by pid and start time (a pid used again is another process), and their memory.

/** The master and every child it has now (workers, and old workers shutting down). */
export async function nginxProcesses(masterPid: number): Promise<ProcessIdentity[]> {
  const master = await identify(masterPid);
  return master === null ? [] : [master, ...(await childrenOf(masterPid))];
}

const key = (p: ProcessIdentity): string => `${p.pid}@${p.startTime}`;

/** The processes of `after` that `before` did not have: started since (a reload's workers, a restarted master). */
export function newProcesses(before: readonly ProcessIdentity[], after: readonly ProcessIdentity[]): ProcessIdentity[] {
  const known = new Set(before.map(key));
  return after.filter((p) => !known.has(key(p)));
}

/** The processes of `before` that `after` no longer has. */
export function goneProcesses(
  before: readonly ProcessIdentity[],
  after: readonly ProcessIdentity[],
): ProcessIdentity[] {
  return newProcesses(after, before);
}

export interface Memory {
  /** The sum of each process's resident set (VmRSS): pages two processes share count twice. */
  rssMiB: number;
  /** The sum of the proportional sets (Pss): a shared page is split between the processes sharing it. */
  pssMiB: number;
}

async function kiB(file: string, field: string): Promise<number> {
  const text = await readFile(file, 'utf8');
  const value = new RegExp(`^${field}:\\s+([0-9]+) kB$`, 'm').exec(text)?.[1];
  if (value === undefined) throw new Error(`no ${field} in ${file}`);
  return Number(value);
}

/** The memory of `processes` together, from /proc/PID/status and /proc/PID/smaps_rollup. */
export async function memoryOf(processes: readonly ProcessIdentity[]): Promise<Memory> {
  let rss = 0;
  let pss = 0;
  for (const p of processes) {
    rss += await kiB(`/proc/${p.pid}/status`, 'VmRSS');
    pss += await kiB(`/proc/${p.pid}/smaps_rollup`, 'Pss');
  }
  return { rssMiB: rss / 1024, pssMiB: pss / 1024 };
}
