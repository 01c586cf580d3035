import type { NginxOutcome } from '../../nginx/process.js';
import type { DataPlane } from '../core/data-plane.js';
import type { RouteTable } from '../core/route-table.js';
import { redactKeys } from '../core/redact.js';

// What each data plane did with the tables it was given, for readiness and status. A
// tracked plane is a thin wrapper the controller applies tables through; the controller
// itself stays unaware of it. Nothing here runs per request.

/**
 * The counters the in-process proxy exposes through `stats()`, read at scrape time. The
 * proxy does not have them yet; the metrics appear once it does.
 */
export interface ProxyStatsLike {
  requests: { '1xx': number; '2xx': number; '3xx': number; '4xx': number; '5xx': number; dropped: number };
  upstreamFailures: number;
}

export type PlaneKind = 'nginx' | 'proxy' | 'nginx-preview';

export interface PlaneState {
  name: PlaneKind;
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
  readonly name: PlaneKind;
  /** The data plane itself, for its own reports (`lastOutcome()`, `stats()`, `files`). */
  readonly plane: DataPlane;
  /** What the controller applies tables through. */
  readonly tracked: DataPlane;
  state(): PlaneState;
}

export function nginxOutcomeOf(plane: DataPlane): NginxOutcome | null {
  const candidate = plane as DataPlane & { lastOutcome?: () => NginxOutcome };
  return typeof candidate.lastOutcome === 'function' ? candidate.lastOutcome() : null;
}

export function proxyStatsOf(plane: DataPlane): ProxyStatsLike | null {
  const candidate = plane as DataPlane & { stats?: () => ProxyStatsLike };
  return typeof candidate.stats === 'function' ? candidate.stats() : null;
}

/**
 * Wraps `plane` so that every apply is recorded. `currentVersion` is the controller's
 * version of the table being applied: the controller publishes a table before it hands
 * it to the data planes, so at apply time its latest version is that table's.
 */
export function trackApplies(name: PlaneKind, plane: DataPlane, currentVersion: () => number | null): TrackedPlane {
  const state: PlaneState = { name, servedVersion: null, servedAt: null, lastError: null, lastReloadAt: null };
  /** The version of the table last refused: nginx tries it again on its own timer. */
  let refusedVersion: number | null = null;
  /** nginx took the refused table on a retry of its own, after the apply the controller awaited had failed. */
  const caughtUpOnItsOwn = (): boolean => {
    const outcome = nginxOutcomeOf(plane);
    return state.lastError !== null && outcome !== null && outcome.ok === true && !outcome.behind && (outcome.since ?? 0) >= state.lastError.at;
  };
  const tracked: DataPlane = {
    async apply(table: RouteTable) {
      const version = currentVersion();
      const unchangedBefore = nginxOutcomeOf(plane)?.unchanged;
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
        const unchangedAfter = nginxOutcomeOf(plane)?.unchanged;
        if (unchangedBefore !== undefined && unchangedAfter === unchangedBefore) state.lastReloadAt = Date.now();
      }
    },
    close: () => plane.close(),
  };
  const current = (): PlaneState => {
    if (caughtUpOnItsOwn()) {
      state.servedVersion = refusedVersion;
      state.servedAt = nginxOutcomeOf(plane)?.since ?? Date.now();
      state.lastError = null;
    }
    return { ...state, lastError: state.lastError && { ...state.lastError } };
  };
  return { name, plane, tracked, state: current };
}
