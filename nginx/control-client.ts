import { chmod, lstat, mkdir, rm, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONTROL_PATHS } from './render-dynamic.js';

// The router's side of dynamic nginx's control server (nginx/lua/k8s_router/control.lua),
// over its unix socket: put a whole table, patch one with a delta, read which table each
// worker serves.

export class ControlError extends Error {
  constructor(
    message: string,
    /** nginx's status when it answered, null when the socket did not (refused, timed out). */
    readonly status: number | null,
    /** The system's error code when the socket could not be reached (ENOENT, ECONNREFUSED...). */
    readonly errno: string | null = null,
  ) {
    super(message);
    this.name = 'ControlError';
  }
}

interface Answer {
  status: number;
  body: string;
}

function exchange(
  socketPath: string,
  method: 'GET' | 'PUT' | 'PATCH',
  path: string,
  body: string | null,
  timeoutMs: number,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method,
        path,
        // The socket's directory is the access control; nginx wants a Host all the same.
        headers: {
          host: 'k8s-router',
          connection: 'close',
          ...(body === null ? {} : { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) }),
        },
        agent: false,
        timeout: timeoutMs,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text.trim() }));
        res.on('error', (err) =>
          reject(new ControlError(`reading the answer of ${method} ${path}: ${err.message}`, null)),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(new ControlError(`${method} ${path} on ${socketPath}: ${err.message}`, null, err.code ?? null)),
    );
    req.end(body ?? undefined);
  });
}

/**
 * What a store's answer says of the workers: nginx answers once every worker serves the
 * table, or after a short wait, with GET /versions' report after its first line; null when
 * the answer has none.
 */
function reportOf(body: string): TableVersions | null {
  const newline = body.indexOf('\n');
  return newline < 0 ? null : parseVersions(body.slice(newline + 1));
}

/**
 * Stores `text` (table-wire.ts's wholeText) in nginx for every worker; resolves once nginx
 * stored it, with which table each worker served then (null when nginx did not say), and
 * rejects with nginx's reason (a ControlError with its status) when it refused it, or when
 * the socket does not answer.
 */
export async function putTable(socketPath: string, text: string, timeoutMs: number): Promise<TableVersions | null> {
  const { status, body } = await exchange(socketPath, 'PUT', CONTROL_PATHS.table, text, timeoutMs);
  if (status !== 200) throw new ControlError(`nginx refused the table (${status}): ${body}`, status);
  return reportOf(body);
}

/**
 * nginx's answers to a delta that ask for the whole table instead: it does not hold the
 * table the delta is for (412: restarted, or another table stored since), or the delta is
 * larger than it takes (413).
 */
const WHOLE_TABLE_WANTED = new Set([412, 413]);

/**
 * Applies `text` (table-wire.ts's deltaText) to the table nginx holds, for every worker:
 * resolves as putTable does once nginx stored it, or with 'whole-table-wanted' when nginx
 * does not hold the delta's base (or will not take a delta that large); rejects with
 * nginx's reason (a ControlError with its status) when it refused it otherwise, or when the
 * socket does not answer.
 */
export async function patchTable(
  socketPath: string,
  text: string,
  timeoutMs: number,
): Promise<TableVersions | null | 'whole-table-wanted'> {
  const { status, body } = await exchange(socketPath, 'PATCH', CONTROL_PATHS.table, text, timeoutMs);
  if (status === 200) return reportOf(body);
  if (WHOLE_TABLE_WANTED.has(status)) return 'whole-table-wanted';
  throw new ControlError(`nginx refused the delta (${status}): ${body}`, status);
}

/** What one worker serves. */
export interface WorkerVersion {
  /** nginx's worker id, 0 to workers - 1 (a worker started again keeps its id). */
  id: number;
  pid: number;
  /** The version of the table it routes with; null before it has one. */
  version: string | null;
}

export interface TableVersions {
  /** worker_processes: how many workers nginx runs. */
  workers: number;
  /** The version of the table nginx holds (it survives a reload, not a restart); null when none. */
  stored: string | null;
  /** The last report of each worker id that reported. */
  reports: WorkerVersion[];
}

/** The text of GET /versions, read; null when it is not that. */
export function parseVersions(text: string): TableVersions | null {
  const lines = text.split('\n');
  if (lines[0] !== 'k8s-router-versions 1') return null;
  const workers = /^workers ([0-9]+)$/.exec(lines[1] ?? '');
  const stored = /^stored ([A-Za-z0-9._-]+)$/.exec(lines[2] ?? '');
  if (workers === null || stored === null) return null;
  const reports: WorkerVersion[] = [];
  for (const line of lines.slice(3)) {
    const report = /^worker ([0-9]+) ([0-9]+) ([A-Za-z0-9._-]+)$/.exec(line);
    if (report === null) return null;
    const version = report[3] as string;
    reports.push({ id: Number(report[1]), pid: Number(report[2]), version: version === '-' ? null : version });
  }
  const storedVersion = stored[1] as string;
  return { workers: Number(workers[1]), stored: storedVersion === '-' ? null : storedVersion, reports };
}

/** Which table each worker serves, as nginx says. */
export async function tableVersions(socketPath: string, timeoutMs: number): Promise<TableVersions> {
  const { status, body } = await exchange(socketPath, 'GET', CONTROL_PATHS.versions, null, timeoutMs);
  if (status !== 200)
    throw new ControlError(`nginx did not say which tables its workers serve (${status}): ${body}`, status);
  const versions = parseVersions(body);
  if (versions === null)
    throw new ControlError(
      `nginx's answer about its workers' tables is not understood: ${JSON.stringify(body.slice(0, 200))}`,
      status,
    );
  return versions;
}

/**
 * Whether every worker serves `version`: a report for each worker id, each with that
 * version and from one of `workerPids` (the master's live workers, when known: a report
 * left by a worker that died, or by the worker an id had before a reload, is not enough).
 */
export function servedByEveryWorker(
  versions: TableVersions,
  version: string,
  workerPids?: ReadonlySet<number>,
): boolean {
  for (let id = 0; id < versions.workers; id++) {
    const report = versions.reports.find((r) => r.id === id);
    if (report === undefined || report.version !== version) return false;
    if (workerPids !== undefined && !workerPids.has(report.pid)) return false;
  }
  return true;
}

/**
 * Makes the control socket's directory, if missing, with mode 0700: nginx makes the socket
 * itself 0666, so the directory is what keeps other users out. nginx -t needs it too (it
 * binds the socket to check it). Safe while nginx runs.
 */
export async function prepareControlSocketDir(socketPath: string): Promise<void> {
  const dir = dirname(socketPath);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const owner = (await stat(dir)).uid;
  if (typeof process.getuid === 'function' && owner !== process.getuid()) {
    throw new Error(`the control socket's directory ${dir} belongs to uid ${owner}, not to the router`);
  }
}

/** Whether a process accepts connections on the unix socket at `socketPath`. */
export function acceptsConnections(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Readies the control socket before nginx starts: its directory as above, and no socket
 * file left by an earlier nginx (nginx cannot bind over one). Only before a start, once
 * every earlier nginx was told to stop: the socket of a running nginx would be lost.
 *
 * An nginx master told to quit removes its socket file itself, a moment after it stops
 * accepting on it. Removed here first, the file it would remove is the new nginx's, whose
 * control socket would then be gone: so a file something still accepts on is waited for
 * (up to `waitMs`), and only a file nothing accepts on (a killed nginx's) is removed here.
 */
export async function prepareControlSocket(socketPath: string, waitMs = 2_000): Promise<void> {
  await prepareControlSocketDir(socketPath);
  const deadline = Date.now() + waitMs;
  for (;;) {
    const existing = await lstat(socketPath).catch(() => null);
    if (existing === null) return;
    if (!existing.isSocket()) throw new Error(`${socketPath} exists and is not a socket`);
    if (Date.now() >= deadline || !(await acceptsConnections(socketPath))) {
      await rm(socketPath, { force: true });
      return;
    }
    await sleep(10);
  }
}
