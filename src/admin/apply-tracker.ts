import type { NginxOutcome } from '../../nginx/process.js';
import type { ProxyStats } from '../../proxy/stats.js';
import type { DataPlane, DataPlaneKind } from '../core/data-plane.js';
import type { RouteTable } from '../core/route-table.js';
import { redactKeys } from '../core/redact.js';

// What each data plane did with the tables it was given, for readiness and status. A
// tracked plane is a thin wrapper the controller applies tables through; the controller
// itself stays unaware of it. Nothing here runs per request.

/** What each kind of data plane reports about itself, beyond the tables it took. */
export interface PlaneReports {
  nginx: NginxOutcome;
  proxy: ProxyStats;
  'nginx-preview': null;
}

/** A data plane of `kind`, with the report that kind gives. */
export type PlaneOf<K extends DataPlaneKind> = K extends 'nginx'
  ? DataPlane & { lastOutcome(): NginxOutcome; readonly files?: { readonly conf: string } }
  : K extends 'proxy'
    ? DataPlane & { stats(): ProxyStats }
    : DataPlane;

/** A plane's report, tagged with its kind: what the admin server reads, with no probing. */
export type PlaneReport = { [K in DataPlaneKind]: { kind: K; report: PlaneReports[K] } }[DataPlaneKind];

export interface PlaneState {
  name: DataPlaneKind;
  /** Version (the controller's) of the last table this plane accepted; null before its first. */
  servedVersion: number | null;
  /** When it accepted that table (ms since the epoch). */
  servedAt: number | null;
  /** The last refusal, API keys hidden; null once a later table is accepted. */
  lastError: { message: string; at: number } | null;
  /**
   * For nginx: when the last apply that had nginx load a config ended (a reload or a
   * start, successful or not); applies that found the config unchanged do not count.
   */
  lastReloadAt: number | null;
}

export interface TrackedPlane {
  readonly name: DataPlaneKind;
  /** What the controller applies tables through. */
  readonly tracked: DataPlane;
  state(): PlaneState;
  /** The plane's own report (nginx's outcome, the proxy's counters). */
  report(): PlaneReport;
  /** The file the managed nginx reads, for /nginx.conf; null for other planes. */
  configFile(): string | null;
}

/** nginx's report among the planes, or null when there is no nginx. */
export function nginxOutcomeOf(plane: TrackedPlane): NginxOutcome | null {
  const report = plane.report();
  return report.kind === 'nginx' ? report.report : null;
}

/** The proxy's counters among the planes, or null when there is no in-process proxy. */
export function proxyStatsOf(plane: TrackedPlane): ProxyStats | null {
  const report = plane.report();
  return report.kind === 'proxy' ? report.report : null;
}

function reporter<K extends DataPlaneKind>(kind: K, plane: PlaneOf<K>): () => PlaneReport {
  if (kind === 'nginx') {
    const nginx = plane as PlaneOf<'nginx'>;
    return () => ({ kind: 'nginx', report: nginx.lastOutcome() });
  }
  if (kind === 'proxy') {
    const proxy = plane as PlaneOf<'proxy'>;
    return () => ({ kind: 'proxy', report: proxy.stats() });
  }
  return () => ({ kind: 'nginx-preview', report: null });
}

/**
 * Wraps `plane` so that every apply is recorded. `currentVersion` is the controller's
 * version of the table being applied: the controller publishes a table before it hands
 * it to the data planes, so at apply time its latest version is that table's.
 */
export function trackApplies<K extends DataPlaneKind>(
  name: K,
  plane: PlaneOf<K>,
  currentVersion: () => number | null,
): TrackedPlane {
  const report = reporter(name, plane);
  const outcomeOf = (): NginxOutcome | null => {
    const r = report();
    return r.kind === 'nginx' ? r.report : null;
  };
  const state: PlaneState = { name, servedVersion: null, servedAt: null, lastError: null, lastReloadAt: null };
  /** The version of the table last refused: nginx tries it again on its own timer. */
  let refusedVersion: number | null = null;
  /** nginx took the refused table on a retry of its own, after the apply the controller awaited had failed. */
  const caughtUpOnItsOwn = (): boolean => {
    const outcome = outcomeOf();
    return (
      state.lastError !== null &&
      outcome !== null &&
      outcome.ok === true &&
      !outcome.behind &&
      (outcome.since ?? 0) >= state.lastError.at
    );
  };
  const tracked: DataPlane = {
    async apply(table: RouteTable) {
      const version = currentVersion();
      const unchangedBefore = outcomeOf()?.unchanged;
      try {
        await plane.apply(table);
        state.servedVersion = version;
        state.servedAt = Date.now();
        state.lastError = null;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        state.lastError = { message: redactKeys(message, table), at: Date.now() };
        refusedVersion = version;
        throw err;
      } finally {
        const unchangedAfter = outcomeOf()?.unchanged;
        if (unchangedBefore !== undefined && unchangedAfter === unchangedBefore) state.lastReloadAt = Date.now();
      }
    },
    close: () => plane.close(),
  };
  const current = (): PlaneState => {
    if (caughtUpOnItsOwn()) {
      state.servedVersion = refusedVersion;
      state.servedAt = outcomeOf()?.since ?? Date.now();
      state.lastError = null;
    }
    return { ...state, lastError: state.lastError && { ...state.lastError } };
  };
  const configFile = (): string | null => (name === 'nginx' ? ((plane as PlaneOf<'nginx'>).files?.conf ?? null) : null);
  return { name, tracked, state: current, report, configFile };
}
