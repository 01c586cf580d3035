import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { trackApplies } from '../src/admin/apply-tracker.js';
import type { ProxyStats } from '../proxy/stats.js';
import { createMetrics } from '../src/admin/metrics.js';
import type { AdminView } from '../src/admin/view.js';
import type { ControllerStats } from '../src/control/controller.js';
import { defaultConfig } from '../src/core/config.js';
import type { EventSinkStats } from '../src/events/event-sink.js';
import type { CollectionStatus } from '../src/sources/kube-watch.js';
import type { NginxOutcome } from '../nginx/process.js';

// The metrics read the components' own counters when scraped. Here the components are
// stand-ins with known counters, so every value can be checked, including those of parts
// (a cluster source, nginx, the proxy's stats()) that the end-to-end tests see only in part.

const watch = (
  events: Partial<CollectionStatus['events']>,
  extra: Partial<CollectionStatus> = {},
): CollectionStatus => ({
  connected: true,
  lastError: null,
  lastErrorAt: null,
  resourceVersion: '7',
  restarts: 0,
  relists: 0,
  listPages: 1,
  listRestarts: 0,
  objects: 0,
  events: { ADDED: 0, MODIFIED: 0, DELETED: 0, BOOKMARK: 0, ERROR: 0, ...events },
  ...extra,
});

const eventStats = (enabled: boolean): EventSinkStats => ({
  enabled,
  off: enabled ? null : 'the source is a manifest file',
  written: 11,
  alreadyReported: 3,
  failed: {
    forbidden: 2,
    unauthorized: 0,
    invalid: 0,
    namespace_gone: 0,
    throttled: 1,
    server_error: 0,
    timeout: 0,
    unreachable: 0,
    other: 0,
  },
  dropped: 5,
  queued: 7,
  overflow: 0,
  inFlight: 1,
});

function view(eventsEnabled = true): AdminView {
  const stats: ControllerStats = {
    changes: 9,
    tablesBuilt: 4,
    buildFailures: 1,
    applies: 3,
    applyFailures: 1,
    skippedUnchanged: 0,
    buildMsTotal: 250,
    lastBuildMs: 20,
    buildPauses: 6,
  };
  const nginx = {
    apply: async () => {},
    close: async () => {},
    lastOutcome: () =>
      ({
        ok: false,
        error: { code: 'KR_NGINX_CONFIG_REFUSED', message: 'no' },
        configVersion: 'abc',
        reloads: 5,
        unchanged: 2,
        failures: 1,
        unexpectedExits: 2,
        restarts: 2,
        lastApplyMs: 1500,
        pid: 77,
        workersShuttingDown: 3,
        errors: { crit: 4, alert: 1, emerg: 0 },
      }) as NginxOutcome,
  };
  const proxyStats: ProxyStats = {
    requests: { '1xx': 1, '2xx': 40, '3xx': 2, '4xx': 7, '5xx': 3, dropped: 4 },
    upstreamFailures: 6,
  };
  const proxy = { apply: async () => {}, close: async () => {}, stats: () => proxyStats };
  return {
    config: defaultConfig(),
    backend: 'nginx',
    port: 80,
    controller: { stats: () => stats, latest: () => null, currentTable: () => null, subscribe: () => () => {} },
    source: {
      start: async () => {},
      snapshot: () => ({ pods: [], secrets: [] }),
      stop: async () => {},
      status: () => ({
        connected: false,
        pods: watch({ ADDED: 12, MODIFIED: 30, BOOKMARK: 3 }, { restarts: 4, relists: 1, objects: 12 }),
        secrets: watch({ ADDED: 2, ERROR: 1 }, { connected: false }),
      }),
    } as AdminView['source'],
    manifest: null,
    planes: [trackApplies('nginx', nginx, () => null), trackApplies('proxy', proxy, () => null)],
    events: { stats: () => eventStats(eventsEnabled) },
  };
}

async function samples(eventsEnabled = true): Promise<Map<string, number>> {
  const text = await createMetrics(view(eventsEnabled), () => false).metrics();
  return new Map(
    text
      .split('\n')
      .filter((line) => line.startsWith('k8s_router_'))
      .map((line) => [line.slice(0, line.lastIndexOf(' ')), Number(line.slice(line.lastIndexOf(' ') + 1))]),
  );
}

describe('metrics', () => {
  it('mirror the controller’s counters', async () => {
    const m = await samples();
    assert.equal(m.get('k8s_router_source_changes_total'), 9);
    assert.equal(m.get('k8s_router_table_builds_total'), 4);
    assert.equal(m.get('k8s_router_table_build_seconds_total'), 0.25);
    assert.equal(m.get('k8s_router_table_last_build_seconds'), 0.02);
    assert.equal(m.get('k8s_router_table_build_failures_total'), 1);
    assert.equal(m.get('k8s_router_table_build_pauses_total'), 6);
    assert.equal(m.get('k8s_router_table_apply_failures_total'), 1);
  });

  it('count watch events by resource and type, restarts and relists, from the cluster source', async () => {
    const m = await samples();
    assert.equal(m.get('k8s_router_watch_events_total{resource="pods",type="ADDED"}'), 12);
    assert.equal(m.get('k8s_router_watch_events_total{resource="pods",type="MODIFIED"}'), 30);
    assert.equal(m.get('k8s_router_watch_events_total{resource="pods",type="BOOKMARK"}'), 3);
    assert.equal(m.get('k8s_router_watch_events_total{resource="secrets",type="ERROR"}'), 1);
    assert.equal(m.get('k8s_router_watch_restarts_total{resource="pods"}'), 4);
    assert.equal(m.get('k8s_router_watch_relists_total{resource="pods"}'), 1);
    assert.equal(m.get('k8s_router_watch_connected{resource="secrets"}'), 0);
    assert.equal(m.get('k8s_router_watch_objects{resource="pods"}'), 12);
    assert.equal(m.get('k8s_router_manifest_readable'), undefined, 'no manifest gauge for a cluster source');
  });

  it('read nginx’s report', async () => {
    const m = await samples();
    assert.equal(m.get('k8s_router_nginx_up'), 1);
    assert.equal(m.get('k8s_router_nginx_reloads_total'), 5);
    assert.equal(m.get('k8s_router_nginx_reload_failures_total'), 1);
    assert.equal(m.get('k8s_router_nginx_last_reload_success'), 0);
    assert.equal(m.get('k8s_router_nginx_last_apply_seconds'), 1.5);
    assert.equal(m.get('k8s_router_nginx_unexpected_exits_total'), 2);
    assert.equal(m.get('k8s_router_nginx_restarts_total'), 2);
    assert.equal(m.get('k8s_router_nginx_errors_total{level="crit"}'), 4);
    assert.equal(m.get('k8s_router_nginx_errors_total{level="alert"}'), 1);
    assert.equal(m.get('k8s_router_nginx_errors_total{level="emerg"}'), 0);
    assert.equal(m.get('k8s_router_nginx_workers_shutting_down'), 3);
  });

  it(
    'read the in-process proxy’s stats() when it has them: ' + 'requests by status class, drops, upstream failures',
    async () => {
      const m = await samples();
      assert.deepEqual(
        ['1xx', '2xx', '3xx', '4xx', '5xx'].map((c) => m.get(`k8s_router_proxy_requests_total{class="${c}"}`)),
        [1, 40, 2, 7, 3],
      );
      assert.equal(m.get('k8s_router_proxy_dropped_connections_total'), 4);
      assert.equal(m.get('k8s_router_proxy_upstream_failures_total'), 6);
    },
  );

  it(
    'read the events sink: written, already there, failed by ' + 'cause, dropped, queued; none when it is off',
    async () => {
      const m = await samples();
      assert.equal(m.get('k8s_router_events_written_total'), 11);
      assert.equal(m.get('k8s_router_events_already_reported_total'), 3);
      assert.equal(m.get('k8s_router_events_failed_total{cause="forbidden"}'), 2);
      assert.equal(m.get('k8s_router_events_failed_total{cause="throttled"}'), 1);
      assert.equal(m.get('k8s_router_events_dropped_total'), 5);
      assert.equal(m.get('k8s_router_events_queued'), 7);
      const off = await samples(false);
      assert.deepEqual(
        [...off.keys()].filter((k) => k.startsWith('k8s_router_events_')),
        [],
      );
    },
  );
});
