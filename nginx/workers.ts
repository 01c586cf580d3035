import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

// What the nginx master's workers are doing, read from /proc (Linux). After a graceful
// reload the old workers keep accepting until the master tells them to quit, about
// 100 ms after the new workers start; a worker that quits retitles itself "worker
// process is shutting down" as it closes its listening sockets. Waiting for that title
// means no new connection can still reach the old config.

/** A process, identified by pid and start time so that a reused pid is not mistaken for it. */
export interface ProcessIdentity {
  pid: number;
  startTime: string;
}

interface ProcStat {
  /** R, S, D, T, Z (zombie: dead, waiting to be reaped), ... */
  state: string;
  ppid: number;
  /** The process group. */
  pgrp: number;
  startTime: string;
}

async function readStat(pid: number): Promise<ProcStat | null> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may contain anything: fields start after the last ")".
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', ppid: Number(fields[1]), pgrp: Number(fields[2]), startTime: fields[19] ?? '' };
  } catch {
    return null;
  }
}

async function numericEntries(dir: string): Promise<number[]> {
  const entries = await readdir(dir).catch(() => [] as string[]);
  return entries.filter((entry) => /^[0-9]+$/.test(entry)).map(Number);
}

/**
 * The live members of process group `pgid`, other than its leader: the workers a master
 * started, which stay in its group after it died (reparented to init, or to nobody we
 * know). While one of them lives, no other process can be given the group's id.
 */
export async function groupMembers(pgid: number): Promise<ProcessIdentity[]> {
  const members: ProcessIdentity[] = [];
  for (const pid of await numericEntries('/proc')) {
    if (pid === pgid) continue;
    const stat = await readStat(pid);
    if (stat !== null && stat.pgrp === pgid && stat.state !== 'Z') members.push({ pid, startTime: stat.startTime });
  }
  return members;
}

/** The identity of a running process, or null when it is gone. */
export async function identify(pid: number): Promise<ProcessIdentity | null> {
  const stat = await readStat(pid);
  return stat === null || stat.state === 'Z' ? null : { pid, startTime: stat.startTime };
}

/** Whether `process` still runs (not a zombie, and its pid not given to another process since). */
export async function stillRuns(process: ProcessIdentity): Promise<boolean> {
  const stat = await readStat(process.pid);
  return stat !== null && stat.startTime === process.startTime && stat.state !== 'Z';
}

/** Signals `target` only if its pid still names the same process; false when it is gone. */
export async function signalProcess(target: ProcessIdentity, signal: NodeJS.Signals): Promise<boolean> {
  if (!(await stillRuns(target))) return false;
  try {
    process.kill(target.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** The parent of `pid`, or null when it is gone. */
export async function parentOf(pid: number): Promise<number | null> {
  return (await readStat(pid))?.ppid ?? null;
}

/** The children of `pid`, or [] where /proc cannot tell. */
export async function childrenOf(pid: number): Promise<ProcessIdentity[]> {
  let pids: number[];
  try {
    const listed = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
    pids = listed.split(' ').filter(Boolean).map(Number);
  } catch {
    // Kernels without CONFIG_PROC_CHILDREN: look for the parent in every process.
    pids = [];
    for (const candidate of await numericEntries('/proc')) {
      if ((await readStat(candidate))?.ppid === pid) pids.push(candidate);
    }
  }
  const children: ProcessIdentity[] = [];
  for (const child of pids) {
    const stat = await readStat(child);
    if (stat !== null) children.push({ pid: child, startTime: stat.startTime });
  }
  return children;
}

/** The command line (the title nginx gives itself), or null when the process is gone. */
export async function commandLine(pid: number): Promise<string | null> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replace(/\0+$/, '').replace(/\0/g, ' ');
  } catch {
    return null;
  }
}

/** The process title, or null when the process is gone (or its pid now names another process). */
export async function processTitle(process: ProcessIdentity): Promise<string | null> {
  if (!(await stillRuns(process))) return null;
  return commandLine(process.pid);
}

/** True once the worker no longer accepts connections: gone, or shutting down. */
async function retired(worker: ProcessIdentity): Promise<boolean> {
  const title = await processTitle(worker);
  return title === null || title.includes('shutting down') || !title.includes('worker process');
}

/**
 * Waits until none of `workers` accepts connections any more; resolves with those that
 * still did when `timeoutMs` ran out.
 */
export async function waitForRetirement(
  workers: ProcessIdentity[],
  timeoutMs: number,
  pollMs = 10,
): Promise<ProcessIdentity[]> {
  const deadline = Date.now() + timeoutMs;
  let active = workers;
  for (;;) {
    const checks = await Promise.all(active.map(async (w) => ((await retired(w)) ? null : w)));
    active = checks.filter((w): w is ProcessIdentity => w !== null);
    if (active.length === 0 || Date.now() >= deadline) return active;
    await sleep(pollMs);
  }
}

/** The children of `masterPid` that are old workers finishing their connections after a reload. */
export async function shuttingDownWorkers(masterPid: number): Promise<ProcessIdentity[]> {
  const out: ProcessIdentity[] = [];
  for (const child of await childrenOf(masterPid)) {
    const title = await processTitle(child);
    if (title !== null && title.includes('shutting down')) out.push(child);
  }
  return out;
}

/** Whether `pid` is a worker of `masterPid` that still takes connections (not one shutting down). */
export async function isCurrentWorker(masterPid: number, pid: number): Promise<boolean> {
  if ((await parentOf(pid)) !== masterPid) return false;
  const title = await commandLine(pid);
  return title !== null && title.includes('worker process') && !title.includes('shutting down');
}
