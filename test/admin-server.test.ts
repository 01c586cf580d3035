import assert from 'node:assert/strict';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { pickFreeLoopbackPort } from '../nginx/status.js';
import { trackApplies, type TrackedPlane } from '../src/admin/apply-tracker.js';
import { decideReadiness, type PlaneReport } from '../src/admin/readiness.js';
import { startAdminServer, type AdminServer } from '../src/admin/server.js';
import { startRouter, type RunningRouter } from '../src/commands/run.js';
import { createController } from '../src/control/controller.js';
import { defaultConfig, loadConfig } from '../src/core/config.js';
import type { DataPlane } from '../src/core/data-plane.js';
import type { RouteTable } from '../src/core/route-table.js';
import { createManifestSource } from '../src/sources/manifest-source.js';
import { eventually } from './support/eventually.js';
import { manifestText } from './support/manifests.js';
import { apiKeySecret, pod } from './support/objects.js';
import { runCli } from './support/run-cli.js';
import { workDir } from './support/work-dir.js';
import type { NginxOutcome } from '../nginx/process.js';

// The admin server of a router started in this process, asked over HTTP as a probe, a
// Prometheus scraper or a person would.

const silent = pino({ level: 'silent' });
const KEY = Buffer.from('admin-test-key').toString('base64');

const objects = (extraHost = false) => [
  pod('web-a', { namespace: 'shop', ip: '127.0.0.201', hosts: 'shop.test', paths: '3000:/', ports: [3000] }),
  pod('web-b', { namespace: 'shop', ip: '127.0.0.202', hosts: 'shop.test', paths: '3000:/', ports: [3000] }),
  pod('api-0', {
    namespace: 'billing',
    ip: '127.0.0.203',
    hosts: 'billing.test',
    paths: '8080:/api 8080:/bad;path',
    ports: [8080],
  }),
  pod('late-0', {
    namespace: 'shop',
    ip: '127.0.0.204',
    hosts: 'shop.test',
    paths: '3000:/',
    ports: [3000],
    ready: false,
  }),
  apiKeySecret('billing', 'admin-test-key'),
  ...(extraHost
    ? [pod('new-0', { namespace: 'fresh', ip: '127.0.0.205', hosts: 'new.test', paths: '80:/', ports: [80] })]
    : []),
];

async function writeManifest(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}

interface Metric {
  type: string;
  help: string;
  samples: Map<string, number>;
}

/** The Prometheus text format, by metric name. */
function parseMetrics(text: string): Map<string, Metric> {
  const metrics = new Map<string, Metric>();
  const get = (name: string): Metric => {
    let m = metrics.get(name);
    if (m === undefined) metrics.set(name, (m = { type: '', help: '', samples: new Map() }));
    return m;
  };
  for (const line of text.split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta !== null) {
      const m = get(meta[2] as string);
      if (meta[1] === 'HELP') m.help = meta[3] as string;
      else m.type = meta[3] as string;
      continue;
    }
    const sample = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (sample === null) continue;
    const name = sample[1] as string;
    const family = metrics.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    get(family).samples.set(`${name}${sample[2] ?? ''}`, Number(sample[3]));
  }
  return metrics;
}

async function showsStatus(base: string, manifest: string): Promise<void> {
  const status = (await (await fetch(`${base}/status`)).json()) as {
    source: unknown;
    backend: string;
    table: { version: number; changedAt: string };
    dataPlanes: Array<{ name: string; servedVersion: number }>;
    rejections: Array<{ pod: string; code: string; reason: string }>;
  };
  assert.deepEqual(status.source, { kind: 'manifest', file: manifest, ok: true, lastError: null });
  assert.equal(status.backend, 'proxy');
  assert.equal(status.table.version, 1);
  assert.ok(Date.now() - Date.parse(status.table.changedAt) < 60_000);
  assert.deepEqual(
    status.dataPlanes.map((p) => [p.name, p.servedVersion]),
    [['proxy', 1]],
  );
  assert.deepEqual(
    status.rejections.map((r) => `${r.pod} ${r.code}`),
    ['api-0 BAD_PATH', 'late-0 NOT_READY'],
  );
  for (const r of status.rejections) assert.ok(r.reason.length > 10, `a reason: ${r.reason}`);
}

async function showsMetrics(base: string): Promise<void> {
  const res = await fetch(`${base}/metrics`);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const metrics = parseMetrics(await res.text());
  const expected: Array<[string, string]> = [
    ['process_cpu_seconds_total', 'counter'],
    ['nodejs_eventloop_lag_seconds', 'gauge'],
    ['k8s_router_info', 'gauge'],
    ['k8s_router_ready', 'gauge'],
    ['k8s_router_routes', 'gauge'],
    ['k8s_router_route_backends', 'gauge'],
    ['k8s_router_rejections', 'gauge'],
    ['k8s_router_table_version', 'gauge'],
    ['k8s_router_table_last_change_timestamp_seconds', 'gauge'],
    ['k8s_router_source_changes_total', 'counter'],
    ['k8s_router_table_builds_total', 'counter'],
    ['k8s_router_table_build_seconds_total', 'counter'],
    ['k8s_router_table_last_build_seconds', 'gauge'],
    ['k8s_router_table_build_failures_total', 'counter'],
    ['k8s_router_table_applies_total', 'counter'],
    ['k8s_router_table_apply_failures_total', 'counter'],
    ['k8s_router_manifest_readable', 'gauge'],
  ];
  for (const [name, type] of expected) {
    assert.equal(metrics.get(name)?.type, type, `${name} is a ${type}`);
    assert.ok((metrics.get(name)?.help.length ?? 0) > 10, `${name} has a help text`);
  }
  for (const [name, m] of metrics) {
    if (!name.startsWith('k8s_router_')) continue;
    if (m.type === 'counter') assert.match(name, /_total$/, `${name}: counters end in _total`);
  }
  const value = (sample: string): number | undefined => metrics.get(sample.replace(/\{.*/, ''))?.samples.get(sample);
  assert.equal(value('k8s_router_routes'), 2);
  assert.equal(value('k8s_router_route_backends'), 3);
  assert.equal(value('k8s_router_rejections{code="BAD_PATH"}'), 1);
  assert.equal(value('k8s_router_rejections{code="NOT_READY"}'), 1);
  assert.equal(value('k8s_router_info{backend="proxy",source="manifest"}'), 1);
  assert.equal(value('k8s_router_ready'), 1);
  assert.equal(value('k8s_router_manifest_readable'), 1);
  assert.ok((value('k8s_router_table_builds_total') ?? 0) >= 1);
  // Metrics that need another backend or source are not there at all.
  assert.ok(![...metrics.keys()].some((n) => n.startsWith('k8s_router_nginx_') || n.startsWith('k8s_router_watch_')));
}

async function followsTheManifest(base: string, manifest: string, router: RunningRouter): Promise<void> {
  const before = router.controller.stats().tablesBuilt;
  await writeManifest(manifest, manifestText(objects(true)));
  await eventually(
    async () => ((await (await fetch(`${base}/status`)).json()) as { table: { version: number } }).table.version === 2,
    'version 2',
    10_000,
  );
  const routes = (await (await fetch(`${base}/routes`)).json()) as { routes: Array<{ host: string }> };
  assert.ok(routes.routes.some((r) => r.host === 'new.test'));
  const metrics = parseMetrics(await (await fetch(`${base}/metrics`)).text());
  assert.equal(metrics.get('k8s_router_table_version')?.samples.get('k8s_router_table_version'), 2);
  assert.ok((metrics.get('k8s_router_table_builds_total')?.samples.get('k8s_router_table_builds_total') ?? 0) > before);

  await writeManifest(manifest, 'kind: [unclosed');
  await eventually(
    async () =>
      parseMetrics(await (await fetch(`${base}/metrics`)).text())
        .get('k8s_router_manifest_readable')
        ?.samples.get('k8s_router_manifest_readable') === 0,
    'the gauge to say the manifest is unusable',
    10_000,
  );
  const status = (await (await fetch(`${base}/status`)).json()) as {
    source: { ok: boolean; lastError: string };
    readiness: { status: string };
  };
  assert.equal(status.source.ok, false);
  assert.match(status.source.lastError, /objects\.yaml/);
  assert.equal(status.readiness.status, 'ready', 'the last good objects keep serving');
}

async function showsNginxConf(base: string, manifest: string, router: RunningRouter): Promise<void> {
  const [res, cli] = await Promise.all([
    fetch(`${base}/nginx.conf`),
    runCli(['render', '--manifest', manifest, '--port', String(router.port), '--listen-address', '127.0.0.1']),
  ]);
  const conf = await res.text();
  assert.equal(res.status, 200);
  assert.ok(cli.stdout.includes(KEY), 'the config nginx gets holds the key');
  assert.equal(conf, cli.stdout.replace(`"${KEY}"`, '"<redacted>"'));
  assert.ok(!conf.includes(KEY));
}

async function servesStatusPage(base: string): Promise<void> {
  const page = await fetch(`${base}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
  assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);
  assert.match(await page.text(), /<script src="status-page\.js"><\/script>/);
  const script = await fetch(`${base}/status-page.js`);
  assert.match(script.headers.get('content-type') ?? '', /javascript/);
  assert.doesNotMatch(
    await script.text(),
    /innerHTML|insertAdjacentHTML|document\.write/,
    'the page never writes HTML from data',
  );
}

describe('admin server of k8s-router run --manifest (in-process proxy)', () => {
  let dir: string;
  let manifest: string;
  let router: RunningRouter;
  let base: string;

  before(async () => {
    dir = await workDir('k8s-router-admin-');
    manifest = join(dir, 'objects.yaml');
    await writeManifest(manifest, manifestText(objects()));
    const config = loadConfig({
      PORT: String(await pickFreeLoopbackPort()),
      LISTEN_ADDRESS: '127.0.0.1',
      ADMIN_PORT: '0',
      HOLD_OFF_MS: '10',
      BACKEND: 'proxy',
    });
    router = await startRouter(config, { manifest, logger: silent, print: () => {} });
    base = `http://127.0.0.1:${router.admin?.port}`;
  });

  after(async () => {
    await router?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('listens on 127.0.0.1 by default', () => {
    assert.equal(router.admin?.address, '127.0.0.1');
  });

  it('/healthz: 200 while the event loop turns, with its delay', async () => {
    const res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { status: string; eventLoopDelayMs: { mean: number; p99: number; max: number } };
    assert.equal(body.status, 'ok');
    assert.equal(typeof body.eventLoopDelayMs.p99, 'number');
  });

  it('/readyz: 200 once the data plane serves the first table', async () => {
    const res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {
      ready: true,
      status: 'ready',
      reason: 'every data plane serves route table v1',
    });
  });

  it('/routes: exactly what `k8s-router routes` prints', async () => {
    const [res, cli] = await Promise.all([fetch(`${base}/routes`), runCli(['routes', '--manifest', manifest])]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(await res.text(), cli.stdout);
  });

  it('/nginx.conf: the config nginx would get (what `render` prints), the API key redacted', () =>
    showsNginxConf(base, manifest, router));

  it('/status: the source, the table version and time, the data planes, and every rejection with code and reason', () =>
    showsStatus(base, manifest));

  it('/metrics: process defaults and the router metrics, named and typed, with the current values', () =>
    showsMetrics(base));

  it(
    'follows the manifest: a new version, the new route, and a readable-manifest gauge that drops while the ' +
      'file is broken',
    () => followsTheManifest(base, manifest, router),
  );

  it('serves the status page and its script with a policy that runs no inline script', () => servesStatusPage(base));
});

describe('admin server of k8s-router run --backend nginx', () => {
  let dir: string;
  let router: RunningRouter;
  let base: string;

  before(async () => {
    dir = await workDir('k8s-router-admin-nginx-');
    const manifest = join(dir, 'objects.yaml');
    await writeManifest(manifest, manifestText(objects()));
    const config = loadConfig({
      PORT: String(await pickFreeLoopbackPort()),
      LISTEN_ADDRESS: '127.0.0.1',
      ADMIN_PORT: '0',
      BACKEND: 'nginx',
      NGINX_PREFIX: join(dir, 'nginx'),
    });
    router = await startRouter(config, { manifest, logger: silent, print: () => {} });
    base = `http://127.0.0.1:${router.admin?.port}`;
  });

  after(async () => {
    await router?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('/nginx.conf is the file the managed nginx reads, its API key redacted', async () => {
    const conf = await (await fetch(`${base}/nginx.conf`)).text();
    assert.match(conf, /^daemon off;$/m, 'the managed config, not the documented one');
    assert.match(conf, /^if \(\$http_x_routing_api_key != "<redacted>"\) \{$/m);
    assert.ok(!conf.includes(KEY));
  });

  it('/status carries nginx’s own report whole, and /metrics the nginx metrics', async () => {
    const status = (await (await fetch(`${base}/status`)).json()) as {
      dataPlanes: Array<{ name: string; nginx: Record<string, unknown> }>;
    };
    const nginx = status.dataPlanes[0];
    assert.equal(nginx?.name, 'nginx');
    assert.equal(typeof nginx?.nginx.pid, 'number');
    assert.equal(nginx?.nginx.ok, true);
    assert.equal(typeof nginx?.nginx.configVersion, 'string');
    assert.equal(typeof nginx?.nginx.lastReloadAt, 'string', 'the start counts as the first load');
    const metrics = parseMetrics(await (await fetch(`${base}/metrics`)).text());
    const value = (name: string): number | undefined => metrics.get(name)?.samples.get(name);
    assert.equal(value('k8s_router_nginx_up'), 1);
    assert.equal(value('k8s_router_nginx_last_reload_success'), 1);
    assert.ok((value('k8s_router_nginx_last_reload_timestamp_seconds') ?? 0) > Date.now() / 1000 - 600);
    for (const name of [
      'k8s_router_nginx_reloads_total',
      'k8s_router_nginx_reload_failures_total',
      'k8s_router_nginx_restarts_total',
      'k8s_router_nginx_unexpected_exits_total',
    ]) {
      assert.equal(metrics.get(name)?.type, 'counter', name);
    }
  });

  it('when nginx dies, counts the exit and the restart, and is ready again once nginx serves', async () => {
    const pid = ((await (await fetch(`${base}/status`)).json()) as { dataPlanes: Array<{ nginx: { pid: number } }> })
      .dataPlanes[0]?.nginx.pid as number;
    process.kill(pid, 'SIGKILL');
    await eventually(
      async () => {
        const metrics = parseMetrics(await (await fetch(`${base}/metrics`)).text());
        return metrics.get('k8s_router_nginx_restarts_total')?.samples.get('k8s_router_nginx_restarts_total') === 1;
      },
      'the restart to be counted',
      15_000,
    );
    const metrics = parseMetrics(await (await fetch(`${base}/metrics`)).text());
    assert.equal(
      metrics.get('k8s_router_nginx_unexpected_exits_total')?.samples.get('k8s_router_nginx_unexpected_exits_total'),
      1,
    );
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
  });
});

/** A data plane whose applies wait for `release()` and can be told to refuse. */
class GatedPlane implements DataPlane {
  private gate: Promise<void>;
  private open: () => void = () => {};
  refuse: string | null = null;
  pid: number | null = 4242;

  constructor() {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }

  release(): void {
    this.open();
  }

  async apply(table: RouteTable): Promise<void> {
    await this.gate;
    if (this.refuse !== null) throw new Error(`${this.refuse} ${table.routes.map((r) => r.apiKey ?? '').join(' ')}`);
  }

  async close(): Promise<void> {}

  /** Enough of nginx's report for readiness: whether its master runs. */
  lastOutcome(): NginxOutcome {
    return {
      ok: this.refuse === null,
      error: null,
      configVersion: null,
      reloads: 0,
      unchanged: 0,
      failures: 0,
      unexpectedExits: 0,
      restarts: 0,
      lastApplyMs: null,
      pid: this.pid,
    } as NginxOutcome;
  }
}

interface ReadyzRig {
  dir: string;
  manifest: string;
  admin: AdminServer;
  plane: GatedPlane;
  started: Promise<void>;
  stop: () => Promise<void>;
}

/** An admin server over a controller whose one data plane applies only when the test lets it. */
async function startReadyzRig(): Promise<ReadyzRig> {
  const dir = await workDir('k8s-router-readyz-');
  const manifest = join(dir, 'objects.yaml');
  await writeManifest(manifest, manifestText(objects()));
  const config = defaultConfig();
  const source = createManifestSource({ file: manifest });
  const plane = new GatedPlane();
  const planes: TrackedPlane[] = [trackApplies('nginx', plane, () => controller.latest()?.version ?? null)];
  const controller = createController({ config, source, dataPlanes: planes.map((p) => p.tracked), holdOffMs: 10 });
  const admin = await startAdminServer(
    { config, backend: 'nginx', port: 80, controller, source, manifest, planes },
    { port: 0, host: '127.0.0.1' },
  );
  const started = controller.start();
  const stop = async () => {
    plane.release();
    await controller.stop();
    await admin.close();
  };
  return { dir, manifest, admin, plane, started, stop };
}

async function readyzOf(
  admin: AdminServer,
): Promise<{ status: number; body: { ready: boolean; status: string; reason: string } }> {
  const res = await fetch(`http://127.0.0.1:${admin.port}/readyz`);
  return { status: res.status, body: (await res.json()) as { ready: boolean; status: string; reason: string } };
}

describe('/readyz through a data plane’s life', () => {
  // Set by before; undefined only when before failed, which after must survive.
  let rig: ReadyzRig;
  const readyz = () => readyzOf(rig.admin);

  before(async () => {
    rig = await startReadyzRig();
  });

  after(async () => {
    await rig?.stop();
    if (rig) await rm(rig.dir, { recursive: true, force: true });
  });

  it('503 with the reason until the first table is served, then 200', async () => {
    const waiting = await readyz();
    assert.equal(waiting.status, 503);
    assert.deepEqual(waiting.body, {
      ready: false,
      status: 'not ready',
      reason: 'waiting for the first route table to be served by nginx',
    });
    rig.plane.release();
    await rig.started;
    const ready = await readyz();
    assert.equal(ready.status, 200);
    assert.equal(ready.body.status, 'ready');
  });

  it(
    '200 "degraded" when the last table was refused while the ' + 'previous one serves, without the refused key',
    async () => {
      rig.plane.refuse = 'nginx -t said no to';
      await writeManifest(rig.manifest, manifestText(objects(true)));
      const degraded = await eventually(
        async () => {
          const r = await readyz();
          return r.body.status === 'degraded' ? r : null;
        },
        'readiness to turn degraded',
        10_000,
      );
      assert.equal(degraded.status, 200);
      assert.match(
        degraded.body.reason,
        new RegExp(
          String.raw`^the last route table was refused by nginx \(nginx -t said no to .*\); ` +
            String.raw`the previous table \(v1\) still serves$`,
        ),
      );
      assert.ok(!degraded.body.reason.includes(KEY), 'the API key in the error is hidden');
    },
  );

  it('503 while nginx is not running, 200 again once it is', async () => {
    rig.plane.pid = null;
    const down = await readyz();
    assert.equal(down.status, 503);
    assert.equal(down.body.reason, 'nginx is not running (it exited; a restart is pending)');
    rig.plane.pid = 4343;
    assert.equal((await readyz()).status, 200);
  });

  it('503 once the router is shutting down', async () => {
    rig.admin.markStopping();
    const res = await readyz();
    assert.equal(res.status, 503);
    assert.equal(res.body.reason, 'the router is shutting down');
  });
});

describe('readiness decision', () => {
  const report = (
    name: 'nginx' | 'proxy',
    state: Partial<PlaneReport['state']>,
    running: boolean | null = null,
  ): PlaneReport => ({
    state: { name, servedVersion: null, servedAt: null, lastError: null, lastReloadAt: null, ...state },
    running,
  });

  it('waits for every data plane, naming the ones that have not served and what they refused', () => {
    const verdict = decideReadiness(
      [report('proxy', { servedVersion: 1 }), report('nginx', { lastError: { message: 'bad config', at: 0 } }, false)],
      false,
    );
    assert.deepEqual(verdict, {
      ready: false,
      status: 'not ready',
      reason: 'waiting for the first route table to be served by nginx; nginx refused it: bad config',
    });
  });

  it('is ready when every plane serves, naming the version', () => {
    assert.deepEqual(decideReadiness([report('nginx', { servedVersion: 3 }, true)], false), {
      ready: true,
      status: 'ready',
      reason: 'every data plane serves route table v3',
    });
  });
});
