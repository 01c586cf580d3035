import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RouteTable } from '../src/core/route-table.js';
import type { DeliveryReport, RunningNginx, TableDelivery } from './delivery.js';
import { NginxApplyError } from './load.js';
import type { NginxRuntime } from './render.js';

// Dynamic mode's delivery: nginx.conf is the same for every table, and each table goes to
// Lua in nginx as data, over a unix socket in the prefix. nginx stores it in shared memory
// and each worker loads it; the table counts as served once every current worker says it
// serves that version. A route change never reloads nginx or starts a worker.

/** What one worker says it serves. */
export interface WorkerTable {
  id: number;
  pid: number;
  version: string | null;
}

export interface TableVersions {
  /** nginx's worker_processes: how many workers must serve a version. */
  count: number;
  workers: WorkerTable[];
}

export interface DynamicDeliveryOptions {
  /** The one nginx.conf of dynamic mode, for these files and status server. */
  render: (runtime: NginxRuntime) => string;
  /** The unix socket nginx takes tables on. */
  controlSocket: string;
  /** The wire text of a table; throws what makes the table unusable, so nothing nginx cannot use is sent. */
  serialize: (table: RouteTable, version: string) => string;
  put: (socket: string, text: string, timeoutMs: number) => Promise<void>;
  versions: (socket: string, timeoutMs: number) => Promise<TableVersions>;
  /** Whether `workerPid` is a current worker of `masterPid` (not one shutting down after a reload). */
  isCurrentWorker: (masterPid: number, workerPid: number) => Promise<boolean>;
  /** How long nginx may take to take a table and have every worker serve it. */
  timeoutMs: number;
}

/** The version of a table: a hash of what is sent, so the same table is recognised and not sent again. */
export function tableVersion(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

export function dynamicDelivery(options: DynamicDeliveryOptions): TableDelivery {
  const { controlSocket, timeoutMs } = options;
  /** The version every worker of the running nginx serves; null after a start. */
  let served: string | null = null;

  function encode(table: RouteTable): { text: string; version: string } {
    let body: string;
    try {
      body = options.serialize(table, '');
    } catch (err) {
      throw new NginxApplyError('TABLE_REFUSED', `the table cannot be sent to nginx: ${(err as Error).message}`);
    }
    const version = tableVersion(body);
    return { text: options.serialize(table, version), version };
  }

  async function everyWorkerServes(nginx: RunningNginx, version: string): Promise<void> {
    const startedAt = Date.now();
    let seen = 'no answer';
    for (let wait = 2; ; wait = Math.min(50, wait * 2)) {
      const left = timeoutMs - (Date.now() - startedAt);
      if (left <= 0) break;
      try {
        const { count, workers } = await options.versions(controlSocket, Math.max(1, Math.min(1_000, left)));
        const current: WorkerTable[] = [];
        for (const w of workers) if (await options.isCurrentWorker(nginx.pid, w.pid)) current.push(w);
        const serving = current.filter((w) => w.version === version);
        if (count > 0 && new Set(serving.map((w) => w.id)).size >= count) return;
        seen = `${serving.length} of ${count} workers serve it (${current.map((w) => `worker ${w.id}: ${w.version ?? 'none'}`).join(', ') || 'none answered'})`;
      } catch (err) {
        seen = (err as Error).message;
      }
      await sleep(wait);
    }
    throw new NginxApplyError('TABLE_NOT_SERVED', `nginx's workers did not all serve table ${version} within ${timeoutMs} ms: ${seen}`);
  }

  return {
    mode: 'dynamic',
    config: (_table, runtime) => options.render(runtime),
    async send(table, nginx) {
      const { text, version } = encode(table);
      if (version === served) return 'unchanged';
      try {
        await options.put(controlSocket, text, timeoutMs);
      } catch (err) {
        if (err instanceof NginxApplyError) throw err;
        throw new NginxApplyError('TABLE_REFUSED', `nginx did not take the table: ${(err as Error).message}`);
      }
      await everyWorkerServes(nginx, version);
      served = version;
      return 'sent';
    },
    forget() {
      served = null;
    },
    report: (): DeliveryReport => ({ mode: 'dynamic', tableVersion: served }),
  };
}
