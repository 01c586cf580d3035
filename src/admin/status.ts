import { readFile } from 'node:fs/promises';
import { renderNginxConf } from '../../nginx/render.js';
import type { ResolvedBackend } from '../core/config.js';
import type { ControllerStats } from '../control/controller.js';
import { redactNginxConf, redactTable } from '../core/redact.js';
import type { Rejection, RouteTable } from '../core/route-table.js';
import type { NginxOutcome } from '../../nginx/process.js';
import { nginxOutcomeOf } from './apply-tracker.js';
import type { Readiness } from './readiness.js';
import { sourceState, type AdminView, type SourceState } from './view.js';

// The bodies of /routes, /status and /nginx.conf, built from redacted data only.

export interface StatusReport {
  readiness: Readiness;
  backend: ResolvedBackend;
  /** Where the data plane listens. */
  listen: { address: string; port: number };
  source: SourceState;
  /** The current table: its version, when it changed last, its size; null before the first. */
  table: { version: number; changedAt: string; buildMs: number; routes: number; rejections: number } | null;
  dataPlanes: Array<{
    name: string;
    servedVersion: number | null;
    servedAt: string | null;
    lastError: { message: string; at: string } | null;
    /** nginx's own report, whole (nginx/process.ts `lastOutcome()`). */
    nginx?: NginxOutcome & { lastReloadAt: string | null };
  }>;
  controller: ControllerStats;
  /** Everything not routed, with its code and reason. */
  rejections: Rejection[];
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** Exactly what `k8s-router routes` prints for the same table. */
export function routesText(table: RouteTable): string {
  return `${JSON.stringify(redactTable(table), null, 2)}\n`;
}

export function statusReport(view: AdminView, readiness: Readiness): StatusReport {
  const latest = view.controller.latest();
  const table = view.controller.currentTable();
  return {
    readiness,
    backend: view.backend,
    listen: { address: view.config.listenAddress, port: view.port },
    source: sourceState(view),
    table:
      latest === null
        ? null
        : {
            version: latest.version,
            changedAt: new Date(latest.builtAt).toISOString(),
            buildMs: latest.buildMs,
            routes: latest.table.routes.length,
            rejections: latest.table.rejections.length,
          },
    dataPlanes: view.planes.map((p) => {
      const state = p.state();
      const outcome = nginxOutcomeOf(p);
      return {
        name: state.name,
        servedVersion: state.servedVersion,
        servedAt: iso(state.servedAt),
        lastError: state.lastError && {
          message: state.lastError.message,
          at: new Date(state.lastError.at).toISOString(),
        },
        ...(outcome === null ? {} : { nginx: { ...outcome, lastReloadAt: iso(state.lastReloadAt) } }),
      };
    }),
    controller: view.controller.stats(),
    rejections: table?.rejections ?? [],
  };
}

/**
 * What nginx gets: the file the managed nginx reads, or with the in-process backend the
 * config `k8s-router render` would print for the current table. Null before there is one.
 */
export async function nginxConfText(view: AdminView): Promise<string | null> {
  const conf = view.planes.map((p) => p.configFile()).find((file) => file !== null);
  if (conf !== undefined && conf !== null) {
    try {
      return redactNginxConf(await readFile(conf, 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }
  const table = view.controller.currentTable();
  return table === null ? null : renderNginxConf(redactTable(table), view.config);
}
