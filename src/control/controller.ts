import type { Logger } from 'pino';
import { withDefaults, type RouterConfig } from '../core/config.js';
import type { Pod } from '../core/kube-objects.js';
import type { DataPlane } from '../core/data-plane.js';
import { IncrementalRouteTable } from '../core/incremental-table.js';
import { redactKeys, redactTable } from '../core/redact.js';
import {
  compareRejections,
  compareRoutes,
  sameRoute,
  type Rejection,
  type Route,
  type RouteTable,
} from '../core/route-table.js';
import { changesInSteps } from '../core/sorted-changes.js';
import { runInSlices, type Steps } from '../core/time-slices.js';
import type { ObjectSource } from '../sources/source.js';

// The controller turns a stream of object changes into as few table applies as it can
// while keeping each change's delay bounded: after a change it waits for a quiet period
// (holdOffMs), but never longer than maxDelayMs after the first change not yet applied.
// It then brings the table up to date with a whole snapshot (so a coalesced or missed
// event can never leave a stale route) and hands it to every data plane that does not
// have it yet. The table is kept incrementally (core/incremental-table.ts): a snapshot
// costs in proportion to what changed, unchanged routes keep their objects, and an
// unchanged table is the same object, so telling what changed costs no serialization.
// A big rebuild runs in slices of buildSliceMs, letting the event loop (which the
// in-process proxy serves requests from) run in between.

/** When the controller rebuilds; each one left out of ControllerOptions comes from `config`. */
export interface ControllerTiming {
  /** HOLD_OFF_MS: quiet period after a change before the table is rebuilt. */
  holdOffMs: number;
  /** MAX_DELAY_MS: longest wait after the first unapplied change, however busy the source is. */
  maxDelayMs: number;
  /**
   * Longest stretch a rebuild holds the event loop before letting it run (5 ms).
   * A proxied request needs a few turns of the loop, so its delay is a few slices.
   */
  buildSliceMs: number;
}

export interface ControllerOptions extends Partial<ControllerTiming> {
  config: RouterConfig;
  source: ObjectSource;
  dataPlanes: DataPlane[];
  logger?: Logger;
}

const BUILD_SLICE_MS = 5;

/** The controller's timing for `options`: what is not given comes from its configuration. */
export function resolveControllerTiming(
  options: Pick<ControllerOptions, 'config' | keyof ControllerTiming>,
): ControllerTiming {
  const { holdOffMs, maxDelayMs } = options.config;
  return withDefaults({ holdOffMs, maxDelayMs, buildSliceMs: BUILD_SLICE_MS }, options);
}

export interface ControllerStats {
  /** Change notifications from the source. */
  changes: number;
  tablesBuilt: number;
  /** Snapshots or builds that threw: nothing applied, the next change tries again. */
  buildFailures: number;
  /** Rounds in which a table went to at least one data plane. */
  applies: number;
  /** Data-plane applies that rejected or threw. */
  applyFailures: number;
  /** Tables built that every data plane already served. */
  skippedUnchanged: number;
  /** Time spent building tables, in total and for the last one (pauses left out). */
  buildMsTotal: number;
  lastBuildMs: number | null;
  /** Times a rebuild paused to let the event loop run. */
  buildPauses: number;
}

/** A table that differs from the one before, as published to subscribers. */
export interface TableUpdate {
  /** 1 for the first table, then one more for each table that differs from the one before. */
  version: number;
  /** API keys included: subscribers redact what they show. */
  table: RouteTable;
  /** When it was built (ms since the epoch) and how long that took. */
  builtAt: number;
  buildMs: number;
  /** The pods it was built from (for their uids, say). */
  pods: readonly Pod[];
}

export type TableListener = (update: TableUpdate) => void;

export interface Controller {
  /** Starts the source and applies the initial table; rejects if the source cannot load at all. */
  start(): Promise<void>;
  /** Stops the source and waits for an apply in progress. The data planes stay up: their owner closes them. */
  stop(): Promise<void>;
  stats(): ControllerStats;
  /** Resolves once no change waits to be applied and no apply is in progress. */
  idle(): Promise<void>;
  /** The last table built, API keys included (for the admin server to redact). */
  currentTable(): RouteTable | null;
  /** The last table published, with its version; null before the first. */
  latest(): TableUpdate | null;
  /**
   * Calls `listener` with every new table as soon as it is built, before the data planes
   * apply it. Listeners run on the routing path: they must return at once (queue work,
   * never await it); one that throws is logged and does not stop the others. Returns a
   * function that unsubscribes.
   */
  subscribe(listener: TableListener): () => void;
}

function describeRoute(route: Route): string {
  const backends = route.backends.map((b) => `${b.namespace}/${b.pod}@${b.ip}:${b.port}`).join(', ');
  const key = route.apiKey === null ? '' : ', API key required';
  const affinity = route.affinity === null ? '' : `, affinity ${route.affinity}`;
  return `${route.host}${route.path} (namespace ${route.namespace}${key}${affinity}) -> ${backends}`;
}

function describeRejection(r: Rejection): string {
  return `${r.namespace}/${r.pod} ${r.field}=${JSON.stringify(r.value)}: ${r.reason} [${r.code}]`;
}

/** At most this many routes or rejections are described in one log line; the rest are counted. */
const LOGGED_PER_LIST = 100;

function describeRoutes(routes: readonly Route[]): string[] {
  return redactTable({ routes: [...routes], rejections: [] }).routes.map(describeRoute);
}

/** Whether two routes read the same in a log line: whether a key is needed, not which. */
function sameDescription(a: Route, b: Route): boolean {
  if ((a.apiKey === null) !== (b.apiKey === null)) return false;
  return sameRoute(a, a.apiKey === b.apiKey ? b : { ...b, apiKey: a.apiKey });
}

/**
 * The routes removed and added, without the pairs that differ only in what a description
 * leaves out (the key itself): those would log the same text twice. Both lists are in
 * table order.
 */
function* visibleRouteChanges(removed: Route[], added: Route[]): Steps<{ removed: Route[]; added: Route[] }> {
  const gone = new Set<Route>();
  const come = new Set<Route>();
  let i = 0;
  let j = 0;
  for (let n = 1; i < removed.length && j < added.length; n++) {
    if (n % 4096 === 0) yield;
    const a = removed[i] as Route;
    const b = added[j] as Route;
    const order = compareRoutes(a, b);
    if (order === 0 && sameDescription(a, b)) {
      gone.add(a);
      come.add(b);
    }
    if (order <= 0) i++;
    if (order >= 0) j++;
  }
  if (gone.size === 0) return { removed, added };
  return { removed: removed.filter((r) => !gone.has(r)), added: added.filter((r) => !come.has(r)) };
}

/**
 * The differences worth a log line, described from the redacted table only. Only the
 * routes and rejections that differ are looked at (unchanged ones are the same objects),
 * and at most LOGGED_PER_LIST of each are described: a first list of 50,000 pods is a
 * count, not a 20 MB line. In steps, like the build: a relist of 50,000 changed pods
 * compares 400,000 routes.
 */
function* tableChanges(before: RouteTable | null, now: RouteTable): Steps<Record<string, unknown>> {
  const rejections = yield* changesInSteps(before?.rejections ?? [], now.rejections, compareRejections);
  const routes = yield* changesInSteps(before?.routes ?? [], now.routes, compareRoutes, sameRoute);
  const visible = yield* visibleRouteChanges(routes.removed, routes.added);
  const counts = {
    routesAdded: visible.added.length,
    routesRemoved: visible.removed.length,
    rejectionsAdded: rejections.added.length,
  };
  const truncated = Object.fromEntries(Object.entries(counts).filter(([, n]) => n > LOGGED_PER_LIST));
  return {
    routesAdded: describeRoutes(visible.added.slice(0, LOGGED_PER_LIST)),
    routesRemoved: describeRoutes(visible.removed.slice(0, LOGGED_PER_LIST)),
    rejectionsAdded: rejections.added.slice(0, LOGGED_PER_LIST).map(describeRejection),
    // How many there were in all, for the lists cut short.
    ...(Object.keys(truncated).length > 0 ? { truncated } : {}),
    rejectionsResolved: rejections.removed.length,
    routes: now.routes.length,
    rejections: now.rejections.length,
  };
}

function zeroStats(): ControllerStats {
  return {
    changes: 0,
    tablesBuilt: 0,
    buildFailures: 0,
    applies: 0,
    applyFailures: 0,
    skippedUnchanged: 0,
    buildMsTotal: 0,
    lastBuildMs: null,
    buildPauses: 0,
  };
}

/** A table from the source's snapshot, built in slices; null (and logged) when building throws. */
async function buildTable(
  builder: IncrementalRouteTable,
  source: ObjectSource,
  buildSliceMs: number,
  stats: ControllerStats,
  logger: Logger | undefined,
): Promise<{ table: RouteTable; pods: Pod[]; builtAt: number; buildMs: number } | null> {
  try {
    const started = performance.now();
    const { pods, secrets } = source.snapshot();
    const snapshotMs = performance.now() - started;
    const run = await runInSlices(builder.updating(pods, secrets), buildSliceMs);
    const table = run.value;
    const buildMs = snapshotMs + run.busyMs;
    stats.buildPauses += run.pauses;
    stats.tablesBuilt++;
    stats.buildMsTotal += buildMs;
    stats.lastBuildMs = buildMs;
    return { table, pods, builtAt: Date.now(), buildMs };
  } catch (err) {
    stats.buildFailures++;
    logger?.error({ err: (err as Error).message }, 'cannot build the route table; keeping the routes served now');
    return null;
  }
}

/** Hands `update` to every subscriber; one that throws is logged and the others still get it. */
function publishTo(listeners: Set<TableListener>, update: TableUpdate, logger: Logger | undefined): void {
  for (const listener of listeners) {
    try {
      listener(update);
    } catch (err) {
      logger?.error({ err: (err as Error).message }, 'a route table subscriber failed');
    }
  }
}

/** Gives `table` to the planes `behind`; `served` keeps, per plane, the table it took. */
async function applyToPlanes(
  behind: DataPlane[],
  table: RouteTable,
  {
    served,
    stats,
    logger,
    dataPlanes,
  }: {
    served: Map<DataPlane, RouteTable>;
    stats: ControllerStats;
    logger: Logger | undefined;
    dataPlanes: DataPlane[];
  },
): Promise<void> {
  stats.applies++;
  const started = Date.now();
  // A data plane that throws instead of rejecting is treated the same way.
  const results = await Promise.allSettled(behind.map(async (plane) => plane.apply(table)));
  if (results.every((r) => r.status === 'fulfilled')) {
    logger?.info({ routes: table.routes.length, ms: Date.now() - started }, 'route table served');
  }
  results.forEach((result, i) => {
    const plane = behind[i] as DataPlane;
    if (result.status === 'fulfilled') {
      served.set(plane, table);
      return;
    }
    // What the plane serves is no longer known (an nginx reload that timed out may have
    // loaded the table after all): the next table goes to it even if it equals the one
    // it served before.
    served.delete(plane);
    stats.applyFailures++;
    const message = result.reason instanceof Error ? result.reason.message : String(result.reason);
    logger?.error(
      { dataPlane: dataPlanes.indexOf(plane), err: redactKeys(message, table) },
      'data plane refused the route table and keeps its previous routes',
    );
  });
}

/**
 * When tables are built: a change waits `holdOffMs` for more (the oldest waits at most `maxDelayMs`), one flush runs
 * at a time, and a change during a flush starts one more, with a fresh snapshot, when it ends.
 */
class FlushScheduler {
  private timer: NodeJS.Timeout | null = null;
  /** When the oldest change not yet in a snapshot arrived. */
  private firstPendingAt: number | null = null;
  private running: Promise<void> | null = null;
  private flushAgain = false;
  private idleWaiters: Array<() => void> = [];
  stopped = false;

  constructor(
    private readonly flush: () => Promise<void>,
    private readonly holdOffMs: number,
    private readonly maxDelayMs: number,
  ) {}

  /** The flush in progress, if any. */
  get flushing(): Promise<void> | null {
    return this.running;
  }

  notifyIdleIfSo(): void {
    if (this.timer !== null || this.running !== null) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  changed(): void {
    const now = Date.now();
    this.firstPendingAt ??= now;
    if (this.timer !== null) clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.holdOffMs, this.firstPendingAt + this.maxDelayMs - now));
    this.timer = setTimeout(() => this.startFlush(), wait);
  }

  cancelTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  startFlush(): void {
    this.cancelTimer();
    if (this.stopped) return this.notifyIdleIfSo();
    if (this.running !== null) {
      // Picked up as soon as the apply in progress ends, with a fresh snapshot.
      this.flushAgain = true;
      return;
    }
    this.flushAgain = false;
    // The snapshot flush() takes right away includes every change so far.
    this.firstPendingAt = null;
    this.running = this.flush().finally(() => {
      this.running = null;
      if (this.flushAgain && !this.stopped) this.startFlush();
      else this.notifyIdleIfSo();
    });
  }

  idle(): Promise<void> {
    if (this.timer === null && this.running === null) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}

export function createController(options: ControllerOptions): Controller {
  const { config, source, dataPlanes, logger } = options;
  const { holdOffMs, maxDelayMs, buildSliceMs } = resolveControllerTiming(options);
  const builder = new IncrementalRouteTable(config);
  const stats = zeroStats();
  const listeners = new Set<TableListener>();
  let latest: TableUpdate | null = null;
  let lastBuilt: RouteTable | null = null;
  /** The table each data plane last accepted: an unchanged table is the same object. */
  const served = new Map<DataPlane, RouteTable>();

  async function flush(): Promise<void> {
    const built = await buildTable(builder, source, buildSliceMs, stats, logger);
    if (built === null) return;
    const { table } = built;
    if (lastBuilt !== table) {
      if (logger !== undefined)
        logger.info((await runInSlices(tableChanges(lastBuilt, table), buildSliceMs)).value, 'route table changed');
      lastBuilt = table;
      latest = {
        version: (latest?.version ?? 0) + 1,
        table,
        builtAt: built.builtAt,
        buildMs: built.buildMs,
        pods: built.pods,
      };
      publishTo(listeners, latest, logger);
    }
    const behind = dataPlanes.filter((plane) => served.get(plane) !== table);
    if (behind.length === 0) {
      stats.skippedUnchanged++;
      logger?.debug('route table unchanged: nothing to apply');
      return;
    }
    await applyToPlanes(behind, table, { served, stats, logger, dataPlanes });
  }

  const scheduler = new FlushScheduler(flush, holdOffMs, maxDelayMs);
  const onChange = (): void => {
    if (scheduler.stopped) return;
    stats.changes++;
    scheduler.changed();
  };

  return {
    async start() {
      scheduler.stopped = false;
      await source.start(onChange);
      // The initial objects are loaded: serve them now rather than after a hold-off
      // (after the flush a change during loading may have started).
      if (scheduler.flushing !== null) await scheduler.flushing;
      scheduler.startFlush();
      await scheduler.flushing;
    },
    async stop() {
      scheduler.stopped = true;
      scheduler.cancelTimer();
      try {
        await source.stop();
      } catch (err) {
        logger?.error({ err: (err as Error).message }, 'the object source did not stop cleanly');
      }
      while (scheduler.flushing !== null) await scheduler.flushing;
      scheduler.notifyIdleIfSo();
    },
    stats: () => ({ ...stats }),
    idle: () => scheduler.idle(),
    currentTable: () => lastBuilt,
    latest: () => latest,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
