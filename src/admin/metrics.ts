import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { EventSinkStats } from '../events/event-sink.js';
import type { NginxOutcome } from '../../nginx/process.js';
import type { ProxyStats } from '../../proxy/stats.js';
import { nginxOutcomeOf, proxyStatsOf } from './apply-tracker.js';
import { decideReadiness, planeReports } from './readiness.js';
import type { KubeSourceStatus } from '../sources/kube-source.js';
import type { CollectionStatus } from '../sources/kube-watch.js';
import { sourceState, type AdminView } from './view.js';

// Prometheus metrics. The components keep plain counters; every metric here reads them
// when it is scraped (`collect`), so nothing is added to the routing path or the proxy's
// request path, and no label takes a host or pod name (their number is unbounded).

const seconds = (ms: number | null | undefined): number => (ms ?? 0) / 1000;

type Read<T> = () => T;

/** A counter whose total is kept elsewhere: set to that total at each scrape. */
function mirroredCounter(registry: Registry, name: string, help: string, read: Read<number>): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

function mirroredGauge(registry: Registry, name: string, help: string, read: Read<number>): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/** A labelled counter or gauge mirrored from a list of (labels, value) read at scrape time. */
function mirroredFamily<L extends string>(
  registry: Registry,
  type: 'counter' | 'gauge',
  name: string,
  help: string,
  labelNames: readonly L[],
  read: Read<Array<[Record<L, string>, number]>>,
): void {
  const options = { name, help, labelNames, registers: [registry] };
  if (type === 'gauge') {
    new Gauge({
      ...options,
      collect() {
        this.reset();
        for (const [labels, value] of read()) this.set(labels, value);
      },
    });
  } else {
    new Counter({
      ...options,
      collect() {
        this.reset();
        for (const [labels, value] of read()) this.inc(labels, value);
      },
    });
  }
}

function controllerMetrics(registry: Registry, view: AdminView, isStopping: () => boolean): void {
  mirroredFamily(
    registry,
    'gauge',
    'k8s_router_info',
    'Always 1: the data-plane backend and the source of Pods and Secrets',
    ['backend', 'source'],
    () => [[{ backend: view.backend, source: view.manifest === null ? 'cluster' : 'manifest' }, 1]],
  );
  mirroredGauge(registry, 'k8s_router_ready', 'Whether /readyz answers 200 (1) or 503 (0)', () =>
    decideReadiness(planeReports(view.planes), isStopping()).ready ? 1 : 0,
  );
  tableMetrics(registry, view);
  buildMetrics(registry, view);
}

/** The current route table: its size, rejections and version. */
function tableMetrics(registry: Registry, view: AdminView): void {
  const table = (): ReturnType<AdminView['controller']['currentTable']> => view.controller.currentTable();
  mirroredGauge(
    registry,
    'k8s_router_routes',
    'Routes (host and path pairs) in the current route table',
    () => table()?.routes.length ?? 0,
  );
  mirroredGauge(registry, 'k8s_router_route_backends', 'Pod backends summed over the routes of the current table', () =>
    (table()?.routes ?? []).reduce((sum, r) => sum + r.backends.length, 0),
  );
  mirroredFamily(
    registry,
    'gauge',
    'k8s_router_rejections',
    'Rejections (pods, hosts or paths not routed) in the current table, by code',
    ['code'],
    () => {
      const byCode = new Map<string, number>();
      for (const r of table()?.rejections ?? []) byCode.set(r.code, (byCode.get(r.code) ?? 0) + 1);
      return [...byCode].map(([code, n]) => [{ code }, n]);
    },
  );
  mirroredGauge(
    registry,
    'k8s_router_table_version',
    'Version of the current route table: 1 for the first, one more for each that differs',
    () => view.controller.latest()?.version ?? 0,
  );
  mirroredGauge(
    registry,
    'k8s_router_table_last_change_timestamp_seconds',
    'When the current route table was built (Unix time)',
    () => seconds(view.controller.latest()?.builtAt),
  );
}

/** The controller's counters: changes seen, tables built and applied. */
function buildMetrics(registry: Registry, view: AdminView): void {
  const stats = (): ReturnType<AdminView['controller']['stats']> => view.controller.stats();
  mirroredCounter(
    registry,
    'k8s_router_source_changes_total',
    'Change notifications from the source of Pods and Secrets',
    () => stats().changes,
  );
  mirroredCounter(
    registry,
    'k8s_router_table_builds_total',
    'Route tables built (changed or not)',
    () => stats().tablesBuilt,
  );
  mirroredCounter(registry, 'k8s_router_table_build_seconds_total', 'Time spent building route tables', () =>
    seconds(stats().buildMsTotal),
  );
  mirroredGauge(registry, 'k8s_router_table_last_build_seconds', 'How long the last route table took to build', () =>
    seconds(stats().lastBuildMs),
  );
  mirroredCounter(
    registry,
    'k8s_router_table_build_pauses_total',
    'Times a rebuild paused to let requests and events run (it builds in slices of a few milliseconds)',
    () => stats().buildPauses,
  );
  mirroredCounter(
    registry,
    'k8s_router_table_build_failures_total',
    'Route table builds that failed (the routes served were kept)',
    () => stats().buildFailures,
  );
  mirroredCounter(
    registry,
    'k8s_router_table_applies_total',
    'Rounds in which a route table went to at least one data plane',
    () => stats().applies,
  );
  mirroredCounter(
    registry,
    'k8s_router_table_apply_failures_total',
    'Applies a data plane refused (it kept its previous table)',
    () => stats().applyFailures,
  );
}

function sourceMetrics(registry: Registry, view: AdminView): void {
  const initial = sourceState(view);
  if (initial.kind === 'manifest') {
    mirroredGauge(
      registry,
      'k8s_router_manifest_readable',
      'Whether the last read of the manifest file succeeded (1) or its last good objects are kept (0)',
      () => {
        const now = sourceState(view);
        return now.kind === 'manifest' && now.ok ? 1 : 0;
      },
    );
    return;
  }
  const watches = (): KubeSourceStatus => {
    const now = sourceState(view);
    return now.kind === 'cluster' ? now : initial;
  };
  const perResource = (read: (w: CollectionStatus) => number) => (): Array<[{ resource: string }, number]> => {
    const w = watches();
    return [
      [{ resource: 'pods' }, read(w.pods)],
      [{ resource: 'secrets' }, read(w.secrets)],
    ];
  };
  mirroredFamily(
    registry,
    'counter',
    'k8s_router_watch_events_total',
    'Watch events received from the API server, by resource and event type',
    ['resource', 'type'],
    () => {
      const w = watches();
      return (['pods', 'secrets'] as const).flatMap((resource) =>
        (Object.entries(w[resource].events) as Array<[string, number]>).map(
          ([type, n]): [{ resource: string; type: string }, number] => [{ resource, type }, n],
        ),
      );
    },
  );
  mirroredFamily(
    registry,
    'counter',
    'k8s_router_watch_restarts_total',
    'Watches restarted after the first one (ended, failed or stalled), by resource',
    ['resource'],
    perResource((w) => w.restarts),
  );
  mirroredFamily(
    registry,
    'counter',
    'k8s_router_watch_relists_total',
    'Full lists after the first one (after 410 Gone), by resource',
    ['resource'],
    perResource((w) => w.relists),
  );
  mirroredFamily(
    registry,
    'gauge',
    'k8s_router_watch_connected',
    'Whether a watch stream is open (1) or not (0), by resource',
    ['resource'],
    perResource((w) => (w.connected ? 1 : 0)),
  );
  mirroredFamily(
    registry,
    'gauge',
    'k8s_router_watch_objects',
    'Objects the router holds, by resource',
    ['resource'],
    perResource((w) => w.objects),
  );
}

function nginxMetrics(registry: Registry, view: AdminView): void {
  const tracked = view.planes.find((p) => nginxOutcomeOf(p) !== null);
  if (tracked === undefined) return;
  const outcome = (): NginxOutcome => nginxOutcomeOf(tracked) as NginxOutcome;
  mirroredGauge(registry, 'k8s_router_nginx_up', 'Whether the nginx master process runs (1) or not (0)', () =>
    outcome().pid === null ? 0 : 1,
  );
  mirroredCounter(
    registry,
    'k8s_router_nginx_reloads_total',
    'Graceful reloads of nginx that loaded a new config',
    () => outcome().reloads,
  );
  mirroredCounter(
    registry,
    'k8s_router_nginx_reload_failures_total',
    'New configs nginx did not get to serve (refused by nginx -t, or not loaded)',
    () => outcome().failures,
  );
  mirroredGauge(
    registry,
    'k8s_router_nginx_last_reload_success',
    'Whether the last apply of a route table to nginx succeeded (1) or not (0; also before the first)',
    () => (outcome().ok === true ? 1 : 0),
  );
  mirroredGauge(
    registry,
    'k8s_router_nginx_last_reload_timestamp_seconds',
    'When the last reload or start of nginx for a new config ended, successful or not (Unix time; 0 before the first)',
    () => seconds(tracked.state().lastReloadAt),
  );
  mirroredGauge(
    registry,
    'k8s_router_nginx_last_apply_seconds',
    'How long the last successful apply took, from render to nginx confirming it serves the config',
    () => seconds(outcome().lastApplyMs),
  );
  mirroredCounter(
    registry,
    'k8s_router_nginx_unexpected_exits_total',
    'Times nginx exited without being asked to',
    () => outcome().unexpectedExits,
  );
  mirroredCounter(
    registry,
    'k8s_router_nginx_restarts_total',
    'Restarts of nginx after such an exit',
    () => outcome().restarts,
  );
  mirroredFamily(
    registry,
    'counter',
    'k8s_router_nginx_errors_total',
    'Lines nginx wrote to its error log at crit, alert and emerg, by level',
    ['level'],
    () =>
      (Object.entries(outcome().errors) as Array<[string, number]>).map(([level, n]): [{ level: string }, number] => [
        { level },
        n,
      ]),
  );
  mirroredGauge(
    registry,
    'k8s_router_nginx_workers_shutting_down',
    'Old nginx workers still finishing their connections after reloads',
    () => outcome().workersShuttingDown,
  );
}

function proxyMetrics(registry: Registry, view: AdminView): void {
  const tracked = view.planes.find((p) => proxyStatsOf(p) !== null);
  if (tracked === undefined) return;
  const stats = (): ProxyStats => proxyStatsOf(tracked) as ProxyStats;
  mirroredFamily(
    registry,
    'counter',
    'k8s_router_proxy_requests_total',
    'Requests answered by the in-process proxy, by status class',
    ['class'],
    () => {
      const { requests } = stats();
      return (['1xx', '2xx', '3xx', '4xx', '5xx'] as const).map((c) => [{ class: c }, requests[c]]);
    },
  );
  mirroredCounter(
    registry,
    'k8s_router_proxy_dropped_connections_total',
    'Connections the in-process proxy closed without an answer (unknown host, as nginx return 444)',
    () => stats().requests.dropped,
  );
  mirroredCounter(
    registry,
    'k8s_router_proxy_upstream_failures_total',
    'Connections or requests to pods that failed (refused, reset, timed out)',
    () => stats().upstreamFailures,
  );
}

function eventMetrics(registry: Registry, view: AdminView): void {
  const sink = view.events;
  if (sink === undefined || !sink.stats().enabled) return;
  const stats = (): EventSinkStats => sink.stats();
  mirroredCounter(
    registry,
    'k8s_router_events_written_total',
    'RouteRejected Events created on pods',
    () => stats().written,
  );
  mirroredCounter(
    registry,
    'k8s_router_events_already_reported_total',
    'Event creates answered 409: the Event was there already (another router or an earlier run)',
    () => stats().alreadyReported,
  );
  mirroredFamily(
    registry,
    'counter',
    'k8s_router_events_failed_total',
    'Event writes that failed, by cause',
    ['cause'],
    () => Object.entries(stats().failed).map(([cause, n]): [{ cause: string }, number] => [{ cause }, n]),
  );
  mirroredCounter(
    registry,
    'k8s_router_events_dropped_total',
    'Rejections whose Event was not written because they resolved first',
    () => stats().dropped,
  );
  mirroredGauge(
    registry,
    'k8s_router_events_queued',
    'Event writes waiting (due, delayed or backing off)',
    () => stats().queued,
  );
}

/** A registry of its own (not prom-client's global one) with the process defaults and the router's metrics. */
export function createMetrics(view: AdminView, isStopping: () => boolean): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  controllerMetrics(registry, view, isStopping);
  sourceMetrics(registry, view);
  nginxMetrics(registry, view);
  proxyMetrics(registry, view);
  eventMetrics(registry, view);
  return registry;
}
