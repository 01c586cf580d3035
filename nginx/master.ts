import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { groupMembers, type ProcessIdentity } from './workers.js';

// One nginx master process run in the foreground as our child. It is started in a
// process group of its own: its workers share that group, so that workers orphaned by a
// master that was killed outright (they keep the listening sockets and serve the old
// config) can still be reached, and so that a Ctrl-C meant for the router does not hit
// nginx before the router stops it gracefully.

export interface MasterExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when nginx could not be started at all (e.g. no such binary). */
  error?: Error;
  /**
   * Processes of its group still running when it was gone: the workers of a master killed
   * outright, which keep its listening sockets and serve its config until someone ends them.
   */
  leftBehind: ProcessIdentity[];
}

export interface MasterOptions {
  nginxBinary: string;
  prefix: string;
  confPath: string;
  /** Where nginx logs before it has read the config (`-e`), so nothing goes to /var/log. */
  errorLog: string;
  /** Called with each line nginx writes to stdout or stderr. */
  onOutput?: (line: string) => void;
}

export interface StopTimeouts {
  /** How long a graceful stop (SIGQUIT: requests in flight finish) may take. */
  gracefulMs: number;
  /** How long a fast stop (SIGTERM) may take before SIGKILL. */
  fastMs: number;
}

export interface NginxMaster {
  readonly pid: number | undefined;
  readonly startedAt: number;
  /** Null while nginx runs. */
  exit(): MasterExit | null;
  readonly exited: Promise<MasterExit>;
  /** True once stop() was called: an exit is then expected. */
  stopping(): boolean;
  /** The last few kilobytes nginx wrote to stdout and stderr. */
  output(): string;
  signal(signal: NodeJS.Signals): void;
  /** Signals the master and every worker it started while the master lives. */
  signalGroup(signal: NodeJS.Signals): void;
  stop(timeouts: StopTimeouts): Promise<MasterExit>;
}

const OUTPUT_TAIL_BYTES = 4096;

function within<T>(promise: Promise<T>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export function spawnNginxMaster(options: MasterOptions): NginxMaster {
  const { nginxBinary, prefix, confPath, errorLog, onOutput } = options;
  const child = spawn(nginxBinary, ['-p', prefix, '-c', confPath, '-e', errorLog], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let exit: MasterExit | null = null;
  /** Set as soon as the master is reaped: from then on its pid may name another process. */
  let reaped = false;
  let stopRequested = false;
  let tail = '';

  const exited = new Promise<MasterExit>((resolve) => {
    child.once('exit', (code, signal) => {
      reaped = true;
      // Workers left behind still hold our end of its stdout and stderr: those pipes must
      // not keep the router running.
      for (const stream of [child.stdout, child.stderr]) (stream as Socket | null)?.unref();
      // Its children were handed to init when it died, and can no longer fork: the list is complete.
      void groupMembers(child.pid as number).then((leftBehind) => {
        exit ??= { code, signal, leftBehind };
        resolve(exit);
      });
    });
    child.on('error', (error) => {
      // Only a failed spawn ends the child here; a failed kill() of a live child does not.
      if (child.pid !== undefined) return;
      exit ??= { code: null, signal: null, error, leftBehind: [] };
      resolve(exit);
    });
  });

  for (const stream of [child.stdout, child.stderr]) {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      tail = (tail + chunk).slice(-OUTPUT_TAIL_BYTES);
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (line.trim() !== '') onOutput?.(line);
    });
  }

  const signalMaster = (signal: NodeJS.Signals): void => {
    if (!reaped && exit === null && child.pid !== undefined) child.kill(signal);
  };

  const signalGroup = (signal: NodeJS.Signals): void => {
    // Once the master is reaped its pid may be reused, so its group is only signalled
    // while it lives; the workers it leaves behind are named in its exit.
    if (child.pid === undefined || reaped) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // ESRCH: nobody left in the group.
    }
  };

  return {
    pid: child.pid,
    startedAt: Date.now(),
    exit: () => exit,
    exited,
    stopping: () => stopRequested,
    output: () => tail,
    signal: signalMaster,
    signalGroup,
    async stop({ gracefulMs, fastMs }) {
      stopRequested = true;
      if (reaped) return exited;
      signalMaster('SIGQUIT');
      if (await within(exited, gracefulMs)) return exited;
      signalMaster('SIGTERM');
      if (await within(exited, fastMs)) return exited;
      signalGroup('SIGKILL');
      return exited;
    },
  };
}
