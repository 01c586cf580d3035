import { nginxOutcomeOf, type PlaneState, type TrackedPlane } from './apply-tracker.js';

// Readiness, for the DaemonSet's probe and the status page: whether this router should
// get traffic. Only the data planes decide it. An API server that went away does not make
// the router unready: it keeps serving the last good routes, which is what readiness means.

export interface Readiness {
  ready: boolean;
  status: 'ready' | 'degraded' | 'not ready';
  reason: string;
}

/** What readiness is decided from, for each data plane. */
export interface PlaneReport {
  state: PlaneState;
  /** For nginx: whether its master process runs; null for planes that serve in this process. */
  running: boolean | null;
}

export function planeReports(planes: readonly TrackedPlane[]): PlaneReport[] {
  return planes.map((p) => {
    const outcome = nginxOutcomeOf(p);
    return { state: p.state(), running: outcome === null ? null : outcome.pid !== null };
  });
}

const names = (reports: PlaneReport[]): string => reports.map((r) => r.state.name).join(', ');

/** Pure: the verdict and the reason for a person reading it. */
export function decideReadiness(reports: readonly PlaneReport[], stopping: boolean): Readiness {
  if (stopping) return { ready: false, status: 'not ready', reason: 'the router is shutting down' };
  const waiting = reports.filter((r) => r.state.servedVersion === null);
  if (waiting.length > 0) {
    const refused = waiting
      .filter((r) => r.state.lastError !== null)
      .map((r) => `${r.state.name} refused it: ${r.state.lastError?.message}`);
    return {
      ready: false,
      status: 'not ready',
      reason: [`waiting for the first route table to be served by ${names(waiting)}`, ...refused].join('; '),
    };
  }
  const down = reports.filter((r) => r.running === false);
  if (down.length > 0) {
    return {
      ready: false,
      status: 'not ready',
      reason: `${names(down)} is not running (it exited; a restart is pending)`,
    };
  }
  const refused = reports.filter((r) => r.state.lastError !== null);
  if (refused.length > 0) {
    const versions = refused.map((r) => `v${r.state.servedVersion}`).join(', ');
    const refusers = refused.map((r) => `${r.state.name} (${r.state.lastError?.message})`).join(', ');
    return {
      ready: true,
      status: 'degraded',
      reason: `the last route table was refused by ${refusers}; the previous table (${versions}) still serves`,
    };
  }
  const versions = [...new Set(reports.map((r) => r.state.servedVersion))].map((v) => `v${v}`).join(', ');
  return { ready: true, status: 'ready', reason: `every data plane serves route table ${versions}` };
}
