import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RouteTable } from '../src/core/route-table.js';
import {
  ControlError,
  prepareControlSocket,
  prepareControlSocketDir,
  patchTable,
  putTable,
  servedByEveryWorker,
  tableVersions,
  type TableVersions,
} from './control-client.js';
import { ControlLostError, type DeliveryReport, type RunningNginx, type TableDelivery } from './delivery.js';
import { NginxApplyError } from './load.js';
import type { LuaModules } from './lua-modules.js';
import { renderDynamicConf } from './render-dynamic.js';
import type { NginxRuntime, RenderOptions } from './render.js';
import { deltaTo, TableWireError, wholeTable, type SentTable } from './table-wire.js';
import { shuttingDownWorkers, childrenOf } from './workers.js';

// Dynamic mode's delivery: nginx.conf is the same for every table, and each table goes to
// Lua in nginx as data, over a unix socket in the prefix. nginx keeps it in shared memory
// and each worker loads it; the table counts as served once every current worker says it
// serves that version. A route change never reloads nginx or starts a worker.

export interface DynamicDeliveryOptions {
  /** The settings the one nginx.conf of dynamic mode is rendered with. */
  render: Omit<RenderOptions, 'runtime'>;
  /** The unix socket nginx takes tables on: inside the prefix, in a directory of the router's only. */
  controlSocket: string;
  luaModules: LuaModules;
  luaDir: string;
  /** How long nginx may take to take a table and have every worker serve it. */
  timeoutMs: number;
}

/** The pids of the workers of `masterPid` that take connections (not those shutting down). */
async function currentWorkers(masterPid: number): Promise<Set<number>> {
  const retiring = new Set((await shuttingDownWorkers(masterPid)).map((w) => w.pid));
  return new Set((await childrenOf(masterPid)).map((w) => w.pid).filter((pid) => !retiring.has(pid)));
}

function describeVersions(versions: TableVersions, live: ReadonlySet<number>): string {
  const reports = versions.reports.map(
    (r) => `worker ${r.id} (pid ${r.pid}${live.has(r.pid) ? '' : ', gone'}): ${r.version ?? 'none'}`,
  );
  return `${versions.workers} workers; ${reports.join(', ') || 'no worker reported'}`;
}

/** Errors of a connect() to a unix socket that no retry repairs: no file there, or nobody listening on it. */
const LOST_SOCKET = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK']);

/** How a table went to nginx: as a delta to the one every worker served, or whole. */
export type SendKind = 'delta' | 'whole';

export interface DynamicDelivery extends TableDelivery {
  /** How the last table that reached nginx went; null before one did. */
  lastSend(): SendKind | null;
}

function refusal(err: TableWireError): NginxApplyError {
  return new NginxApplyError('KR_NGINX_TABLE_REFUSED', `the table cannot be sent to nginx: ${err.message}`);
}

/** A failed exchange on the control socket, as the manager handles it. */
function controlFailure(err: unknown): Error {
  if (err instanceof ControlError && err.errno !== null && LOST_SOCKET.has(err.errno)) {
    const why = `nginx's control socket cannot be reached (${err.message})`;
    return new ControlLostError(`${why}: only a fresh nginx binds it again`);
  }
  const answered = err instanceof ControlError && err.status !== null;
  return new NginxApplyError(answered ? 'KR_NGINX_TABLE_REFUSED' : 'KR_NGINX_IO_FAILED', (err as Error).message);
}

/** A table stored in nginx: how it went, and which table each worker served when nginx answered (if it said). */
interface Stored {
  kind: SendKind;
  sent: SentTable;
  report: TableVersions | null;
}

/**
 * Stores `table` as `version` in nginx: as a delta to `served` when nginx holds that table
 * and the delta is the smaller send, else whole. Every line sent is checked first.
 */
async function store(
  socket: string,
  served: SentTable | null,
  table: RouteTable,
  version: string,
  timeoutMs: number,
): Promise<Stored> {
  try {
    const delta = served === null ? null : deltaTo(served, table, version);
    const patched = delta === null ? null : await patchTable(socket, delta.text, timeoutMs);
    if (delta !== null && patched !== 'whole-table-wanted') return { kind: 'delta', sent: delta.sent, report: patched };
    const whole = wholeTable(table, version);
    return { kind: 'whole', sent: whole.sent, report: await putTable(socket, whole.text, timeoutMs) };
  } catch (err) {
    throw err instanceof TableWireError ? refusal(err) : controlFailure(err);
  }
}

/**
 * What a store's answer says: which table each worker served, and the workers that took
 * connections as the store began (read meanwhile). A report of the new version comes from a
 * worker that served it after the store; that worker was a current one just before.
 */
interface FirstLook {
  versions: TableVersions;
  live: Promise<Set<number>>;
}

/**
 * Resolves once every live worker of `nginx` reports `version`, as `first` says or, when it
 * does not, as nginx says asked again; an NginxApplyError after `timeoutMs`.
 */
async function everyWorkerServes(
  socket: string,
  nginx: RunningNginx,
  version: string,
  timeoutMs: number,
  first: FirstLook | null,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // What nginx last answered, and what went wrong since: the last ask before the deadline
  // has little time, and its timeout alone would hide what the workers said before.
  let answered: string | null = null;
  let failed: string | null = null;
  let known = first;
  for (let wait = 1; ; wait = Math.min(20, wait * 2)) {
    try {
      const [versions, live] = await Promise.all([
        known?.versions ?? tableVersions(socket, Math.max(1, Math.min(1_000, deadline - Date.now()))),
        known?.live ?? currentWorkers(nginx.pid),
      ]);
      if (servedByEveryWorker(versions, version, live)) return;
      answered = describeVersions(versions, live);
      failed = null;
    } catch (err) {
      failed = (err as Error).message;
    }
    if (Date.now() >= deadline) break;
    if (known === null) await sleep(wait);
    known = null;
  }
  const seen = [answered ?? 'no answer', ...(failed === null ? [] : [`then ${failed}`])].join('; ');
  throw new NginxApplyError(
    'KR_NGINX_TABLE_NOT_SERVED',
    `nginx's workers did not all serve table ${version} within ${timeoutMs} ms: ${seen}`,
  );
}

export function dynamicDelivery(options: DynamicDeliveryOptions): DynamicDelivery {
  const { controlSocket, timeoutMs } = options;
  /** What every worker of the running nginx serves, as far as this delivery knows; null after a start. */
  let served: SentTable | null = null;
  let last: SendKind | null = null;
  // Versions are this manager's: a word of its own and a count, never reused by another.
  const origin = randomBytes(4).toString('hex');
  let sent = 0;

  return {
    mode: 'dynamic',
    config: (_table, runtime: NginxRuntime) =>
      renderDynamicConf({
        ...options.render,
        runtime,
        controlSocket,
        luaModules: options.luaModules,
        luaDir: options.luaDir,
      }),
    // nginx -t binds the control socket to check the config: its directory must be there.
    prepare: () => prepareControlSocketDir(controlSocket),
    // A socket file left by an nginx that was killed would stop the new one from binding.
    beforeStart: () => prepareControlSocket(controlSocket),
    async send(table, nginx) {
      // The controller hands over a new table object only when the table changed, so the same
      // object is the same table: recognised without reading it.
      if (served !== null && table === served.table) return 'unchanged';
      const version = `${origin}-${++sent}`;
      // Read from /proc while nginx takes the table.
      const live = currentWorkers(nginx.pid);
      live.catch(() => {});
      const stored = await store(controlSocket, served, table, version, timeoutMs);
      last = stored.kind;
      const first = stored.report === null ? null : { versions: stored.report, live };
      await everyWorkerServes(controlSocket, nginx, version, timeoutMs, first);
      served = stored.sent;
      return 'sent';
    },
    forget() {
      served = null;
    },
    lastSend: () => last,
    report: (): DeliveryReport => ({ mode: 'dynamic', tableVersion: served?.version ?? null }),
  };
}
