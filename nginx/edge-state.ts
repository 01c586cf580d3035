import type { Logger } from 'pino';
import { SecretScrubber } from '../src/core/redact.js';
import type { RouteTable } from '../src/core/route-table.js';
import { PieceHashes, type ConfPieces } from './conf-pieces.js';
import type { TableDelivery } from './delivery.js';
import type { ErrorLogFollower } from './error-log.js';
import type { Leftovers } from './leftovers.js';
import { initialState, type ManagerEvent, type ManagerState } from './manager-state.js';
import type { NginxMaster, StopTimeouts } from './master.js';
import type { NginxFiles } from './prefix-files.js';
import type { WorkerIdentity } from './worker-user.js';

// What the pieces of the nginx manager's edge share (the jobs in apply-job.ts and
// restart-stop-jobs.ts, the processes in master-edge.ts, the report in outcome.ts): what
// they run with, fixed when the manager is made, and everything they change, in one
// object, so a piece's signature says what it may touch. The state machine's own state
// (manager-state.ts) is part of it, written by the dispatch alone; the rest is what the
// machine cannot hold as data: processes, watchers, files and the tables themselves.

/** What the edge runs with: fixed when the manager is made. */
export interface EdgeSetup {
  readonly nginxBinary: string;
  readonly prefix: string;
  readonly files: NginxFiles;
  /** How a table reaches nginx. */
  readonly delivery: TableDelivery;
  readonly logger: Logger | undefined;
  /** Whether each new config goes through `nginx -t` before nginx loads it. */
  readonly checkBeforeLoad: boolean;
  /** How long nginx may take to start or reload before the attempt counts as failed. */
  readonly confirmTimeoutMs: number;
  readonly stopTimeouts: StopTimeouts;
  /** How often nginx's error log and its old workers are looked at. */
  readonly watchIntervalMs: number;
  /** nginx processes of ours that no running master manages: they free the ports before a start. */
  readonly leftovers: Leftovers;
}

/** Everything the edge changes. */
export interface EdgeState {
  /** The state machine's state: written by the dispatch only, read by every piece. */
  machine: ManagerState;
  /** The tables the machine names (the desired one and the served one), by number. */
  readonly tables: Map<number, RouteTable>;
  /** The number the last table given to apply() got. */
  tableCount: number;
  /** The master we started, while it is ours to run (null once it exited, was retired or stopped). */
  master: NginxMaster | null;
  /** The text of the config nginx serves: what a restart loads. */
  liveText: ConfPieces | null;
  /** Loopback port of nginx's status server; picked by the first prepare when not given. */
  statusPort: number | null;
  /** Who nginx's workers run as: undefined until looked up, null when the router is not root. */
  workerIdentity: WorkerIdentity | null | undefined;
  /** Whether the directories, the delivery and the watchers are ready (the first apply or restart does it). */
  prepared: boolean;
  errorLog: ErrorLogFollower | null;
  /** The timer that counts old workers; null before the first prepare. */
  workerWatch: NodeJS.Timeout | null;
  /** Old workers still finishing their connections after reloads, as last counted. */
  workersShuttingDown: number;
  /** Every API key the manager was given, so that none is logged or reported from nginx's text. */
  readonly secrets: SecretScrubber;
  /** The hashes of the config pieces rendered so far, so an unchanged piece is not hashed again. */
  readonly hashes: PieceHashes;
}

export interface Edge {
  readonly setup: EdgeSetup;
  readonly live: EdgeState;
  /**
   * Hands `event` to the state machine and runs the effects it asks for; returns the job it
   * queued that the caller may wait for (an apply's, a stop's), if any.
   */
  dispatch(event: ManagerEvent): Promise<void> | undefined;
  /** Dispatches an event whose jobs nobody waits for: a job that fails says so in the state it dispatches. */
  notify(event: ManagerEvent): void;
}

export function createEdgeState(given: { statusPort?: number; workerIdentity?: WorkerIdentity | null }): EdgeState {
  return {
    machine: initialState(),
    tables: new Map(),
    tableCount: 0,
    master: null,
    liveText: null,
    statusPort: given.statusPort ?? null,
    workerIdentity: given.workerIdentity,
    prepared: false,
    errorLog: null,
    workerWatch: null,
    workersShuttingDown: 0,
    secrets: new SecretScrubber(),
    hashes: new PieceHashes(),
  };
}

/** Whether the master we started still runs. */
export function masterRuns(live: EdgeState): boolean {
  return live.master !== null && live.master.exit() === null;
}
