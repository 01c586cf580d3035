import type { RouteTable } from '../src/core/route-table.js';
import type { ConfPieces } from './conf-pieces.js';
import { NginxApplyError } from './load.js';
import type { NginxRuntime } from './render.js';

// The seam of the nginx manager: how a route table reaches nginx. The manager starts,
// reloads, restarts and stops nginx the same way in every mode; a delivery says which
// config nginx needs for a table and what else must happen once nginx serves that config.
//
// - documented: the table is rendered into nginx.conf; loading the config is the delivery.
// - dynamic: nginx.conf is the same for every table; the table is sent to Lua in nginx as
//   data, and is served once every worker serves its version. No reload for a change.

/**
 * A send that could not reach nginx at all, in a way only a fresh nginx repairs: its
 * control socket is gone (removed, or replaced by a file nothing listens on), and the
 * running master will never bind it again.
 */
export class ControlLostError extends NginxApplyError {
  constructor(message: string) {
    super('KR_NGINX_IO_FAILED', message);
    this.name = 'ControlLostError';
  }
}

/** What a delivery may use of the running nginx. */
export interface RunningNginx {
  /** The master's pid. */
  readonly pid: number;
}

export interface TableDelivery {
  readonly mode: 'documented' | 'dynamic';
  /** The config nginx needs to serve `table`, run with `runtime`'s files and status server. */
  config(table: RouteTable, runtime: NginxRuntime): string | ConfPieces;
  /**
   * Gets `table` to `nginx`, which serves the config `config(table)` gave; resolves once
   * every worker serves it: 'sent', or 'unchanged' when nothing had to be sent. Rejects
   * with an NginxApplyError, a ControlLostError when only a fresh nginx could take it.
   */
  send(table: RouteTable, nginx: RunningNginx): Promise<'sent' | 'unchanged'>;
  /** nginx was started afresh: it holds no table. */
  forget(): void;
  /** Readies what the config needs before nginx (or `nginx -t`) reads it, once. */
  prepare?(): Promise<void>;
  /** Readies what a new master needs, just before it starts (no nginx of ours runs then). */
  beforeStart?(): Promise<void>;
  /** What the delivery can say about itself for status (dynamic: the table version served). */
  report(): DeliveryReport;
}

export interface DeliveryReport {
  mode: 'documented' | 'dynamic';
  /** Dynamic mode: the version of the table every worker serves, null before the first. */
  tableVersion: string | null;
}

/** The documented config: the table rendered into nginx.conf, which nginx loads. */
export function documentedDelivery(
  render: (table: RouteTable, runtime: NginxRuntime) => string | ConfPieces,
): TableDelivery {
  return {
    mode: 'documented',
    config: render,
    send: async () => 'unchanged',
    forget() {},
    report: () => ({ mode: 'documented', tableVersion: null }),
  };
}
