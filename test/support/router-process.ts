import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { endNginxOn } from './nginx-wrapper.js';

// `k8s-router run` as a real child process, the way users run it: started from the
// sources through tsx, watched through its JSON log lines, stopped by pid with SIGTERM.

// K8S_ROUTER_ROOT runs the router of another checkout (say, an older commit) against these tests' fakes.
const ROOT = process.env.K8S_ROUTER_ROOT ?? fileURLToPath(new URL('../..', import.meta.url));

export interface RouterProcess {
  readonly pid: number;
  /** Parsed JSON log lines so far (standard error). */
  readonly logs: Array<Record<string, unknown>>;
  /** Everything printed on standard output so far. */
  stdout(): string;
  /**
   * Resolves with the first log line that satisfies `match`, among those from index
   * `since` on (default: every line, already seen or to come).
   */
  waitForLog(
    match: (line: Record<string, unknown>) => boolean,
    what: string,
    timeoutMs?: number,
    since?: number,
  ): Promise<Record<string, unknown>>;
  /** SIGTERM, then the exit code (or the signal that ended it). */
  stop(): Promise<number | NodeJS.Signals>;
  /** Sends `signal` to the router process (not to its nginx). */
  kill(signal: NodeJS.Signals): void;
  /** The exit code (or the signal that ended it), once it exited. */
  readonly exited: Promise<number | NodeJS.Signals>;
  /** Whether the process has exited (by itself, or stopped). */
  hasExited(): boolean;
}

export interface RouterProcessOptions {
  /** `run` unless told otherwise (`demo` starts the same way, with its pods first). */
  command?: string;
  /** How long it may take to log that it serves (a demo on a busy machine needs longer). */
  startTimeoutMs?: number;
  /** Arguments for node itself (e.g. --inspect=127.0.0.1:0). */
  nodeArgs?: string[];
}

/**
 * Waits for a log line of the child that matches, failing with every line seen when it
 * times out or the child exits.
 */
function logWaiter(
  child: ChildProcess,
  logs: Array<Record<string, unknown>>,
  waiters: Set<() => void>,
): RouterProcess['waitForLog'] {
  return (match, what, timeoutMs = 15_000, since = 0) =>
    new Promise((resolve, reject) => {
      const seen = (): string => logs.map((l) => JSON.stringify(l)).join('\n');
      const check = (): boolean => {
        const found = logs.slice(since).find(match);
        if (found === undefined) return false;
        cleanup();
        resolve(found);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; logs:\n${seen()}`));
      }, timeoutMs);
      const onExit = (): void => {
        cleanup();
        reject(new Error(`router exited while waiting for ${what}; logs:\n${seen()}`));
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        waiters.delete(wake);
        child.off('exit', onExit);
      };
      const wake = (): void => void check();
      if (check()) return;
      waiters.add(wake);
      child.once('exit', onExit);
    });
}

/**
 * Follows a child that runs the router (directly, or in a container whose output it
 * relays): its log lines on standard error, its standard output and its exit.
 */
export function followRouter(child: ChildProcess): RouterProcess {
  const logs: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let out = '';
  let errText = '';
  const exit: Promise<number | NodeJS.Signals> = new Promise((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString('utf8');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    errText += chunk.toString('utf8');
    let newline: number;
    while ((newline = errText.indexOf('\n')) >= 0) {
      const line = errText.slice(0, newline);
      errText = errText.slice(newline + 1);
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ text: line });
      }
    }
    for (const wake of waiters) wake();
  });

  const waitForLog = logWaiter(child, logs, waiters);

  const router: RouterProcess = {
    pid: child.pid ?? -1,
    logs,
    stdout: () => out,
    waitForLog,
    exited: exit,
    kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    hasExited: () => child.exitCode !== null || child.signalCode !== null,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      try {
        return await exit;
      } finally {
        clearTimeout(timer);
      }
    },
  };
  return router;
}

export async function startRouterProcess(
  args: string[],
  env: Record<string, string> = {},
  options: RouterProcessOptions = {},
): Promise<RouterProcess> {
  const { command = 'run', startTimeoutMs = 15_000, nodeArgs = [] } = options;
  const child: ChildProcess = spawn(
    process.execPath,
    [...nodeArgs, '--import', 'tsx', 'src/cli.ts', command, ...args],
    {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/root',
        LOG_LEVEL: 'debug',
        ADMIN_PORT: '0',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const router = followRouter(child);
  try {
    // JSON lines, or with LOG_FORMAT=pretty text lines.
    await router.waitForLog(
      (l) =>
        l.msg === 'k8s-router is serving' || (typeof l.text === 'string' && l.text.includes(' k8s-router is serving ')),
      'the router to serve',
      startTimeoutMs,
    );
  } catch (err) {
    // Left running, it would keep the test process alive for good (and hold its ports).
    router.kill('SIGKILL');
    await router.exited;
    if (env.NGINX_PREFIX !== undefined) await endNginxOn(env.NGINX_PREFIX);
    throw err;
  }
  return router;
}

/** The admin port the router logged when it started serving. */
export function adminPortOf(router: RouterProcess): number {
  const line = router.logs.find((l) => l.msg === 'k8s-router is serving');
  if (typeof line?.adminPort !== 'number') throw new Error('the router logged no admin port');
  return line.adminPort;
}
