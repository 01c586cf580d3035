// The measurements of bench/control-plane.ts, one per process: that script compiles this
// file with the project (tsc, as `npm run build` does) and runs each task in a fresh
// plain-node child, so that sizes do not share a heap, the RSS is the router's and not
// tsx's, and the code measured is the code that ships. Each task prints one line
// `RESULT <json>` on standard output.
//
//   node <build>/bench/lib/control-plane-tasks.js build --pods N [--changes] [--repeats R]
//   node <build>/bench/lib/control-plane-tasks.js parse --pods N [--yaml-package]
//   node <build>/bench/lib/control-plane-tasks.js nginx --routes N [--repeats R]
//   node <build>/bench/lib/control-plane-tasks.js stall --pods N --pod-port P --scenarios 'a;b;...'

import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance, PerformanceObserver } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import jsyaml from 'js-yaml';
import { pino } from 'pino';
import { parseAllDocuments } from 'yaml';
import { findNginxBinary } from '../../nginx/binary.js';
import { checkNginxConfig } from '../../nginx/check.js';
import { IncrementalNginxRenderer } from '../../nginx/incremental-render.js';
import { createNginxDataPlane } from '../../nginx/process.js';
import { renderNginxConf } from '../../nginx/render.js';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { startProxy } from '../../proxy/server.js';
import { createController } from '../../src/control/controller.js';
import { defaultConfig } from '../../src/core/config.js';
import { IncrementalRouteTable } from '../../src/core/incremental-table.js';
import { objectKey, type Pod, type Secret } from '../../src/core/kube-objects.js';
import { parseManifest, quickDocuments } from '../../src/core/manifest.js';
import { buildRouteTable, compareRoutes, type Route, type RouteTable } from '../../src/core/route-table.js';
import type { ObjectSource } from '../../src/sources/source.js';
import { benchPod, benchPods, benchSecrets, hostsOf } from './cluster.js';

const MiB = 2 ** 20;

function timed<T>(work: () => T): [T, number] {
  const started = performance.now();
  const value = work();
  return [value, performance.now() - started];
}

/** Reads a rendered config as nginx's manager does first (it hashes it): a rope becomes flat text. */
function flatten(text: string): number {
  return text.charCodeAt(text.length - 1);
}

function maxRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

// --- build: table and render from scratch, and one changed pod ------------------------

type ChangeKind = 'pod IP changes' | 'pod replaced (new name and hosts)' | 'pod turns not ready' | 'nothing changes';

function changedPod(kind: ChangeKind, pod: Pod, n: number): Pod {
  const metadata = pod.metadata ?? {};
  switch (kind) {
    case 'pod IP changes':
      return { ...pod, status: { ...pod.status, podIP: `10.250.${(n >> 8) & 255}.${n & 255}` } };
    case 'pod replaced (new name and hosts)':
      return {
        ...pod,
        metadata: { ...metadata, name: `replacement-${n}`, annotations: { ...metadata.annotations, routingHosts: `new-${n}.example.com www-new-${n}.example.org` } },
      };
    case 'pod turns not ready':
      return { ...pod, status: { ...pod.status, conditions: [{ type: 'Ready', status: n % 2 === 0 ? 'False' : 'True' }] } };
    case 'nothing changes':
      return pod;
  }
}

export interface BuildResult {
  pods: number;
  routes: number;
  rejections: number;
  confBytes: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  peakRssMiB: number;
  coldTableMs: number;
  coldRenderMs: number;
  warmTableMs: number[];
  warmRenderMs: number[];
  referenceTableMs: number[];
  referenceRenderMs: number[];
  /** renderMs: the renderer's own work; readMs: the first read of its text (flattening the rope). */
  changes: Array<{ kind: ChangeKind; tableMs: number[]; renderMs: number[]; readMs: number[] }>;
}

async function buildTask(pods: number, changes: boolean, repeats: number): Promise<BuildResult> {
  const config = defaultConfig();
  const objects = benchPods(pods);
  const secrets = benchSecrets(pods);
  const rssBeforeMiB = process.memoryUsage().rss / MiB;

  // The first build and render of the process, as a router's first list.
  const builder = new IncrementalRouteTable(config);
  const renderer = new IncrementalNginxRenderer();
  const [table, coldTableMs] = timed(() => builder.update(objects, secrets));
  const [text, coldRenderMs] = timed(() => {
    const conf = renderer.render(table, config);
    flatten(conf);
    return conf;
  });
  const peakRssMiB = maxRssMiB();
  const rssAfterMiB = process.memoryUsage().rss / MiB;

  // The same again in fresh builders (a relist that changed everything), JIT warm.
  const warmTableMs: number[] = [];
  const warmRenderMs: number[] = [];
  const referenceTableMs: number[] = [];
  const referenceRenderMs: number[] = [];
  let referenceText = '';
  for (let r = 0; r < repeats; r++) {
    const [t, tableMs] = timed(() => new IncrementalRouteTable(config).update(objects, secrets));
    warmTableMs.push(tableMs);
    warmRenderMs.push(timed(() => flatten(new IncrementalNginxRenderer().render(t, config)))[1]);
    const [reference, refTableMs] = timed(() => buildRouteTable(config, objects, secrets));
    referenceTableMs.push(refTableMs);
    const [conf, refRenderMs] = timed(() => renderNginxConf(reference, config));
    referenceRenderMs.push(refRenderMs);
    referenceText = conf;
  }
  if (referenceText !== text) throw new Error('the incremental nginx.conf differs from the reference');

  // One changed pod at a time, in the builder and renderer of the first build.
  const changeResults: BuildResult['changes'] = [];
  if (changes) {
    let current = objects;
    const kinds: ChangeKind[] = ['pod IP changes', 'pod replaced (new name and hosts)', 'pod turns not ready', 'nothing changes'];
    for (const kind of kinds) {
      const tableMs: number[] = [];
      const renderMs: number[] = [];
      const readMs: number[] = [];
      for (let n = 0; n < 30; n++) {
        const at = (n * 7919 + 13) % current.length;
        const next = current.slice();
        next[at] = changedPod(kind, current[at] as Pod, n);
        current = next;
        const [t, ms] = timed(() => builder.update(current, secrets));
        tableMs.push(ms);
        const [conf, renderOnlyMs] = timed(() => renderer.render(t, config));
        renderMs.push(renderOnlyMs);
        readMs.push(timed(() => flatten(conf))[1]);
      }
      changeResults.push({ kind, tableMs, renderMs, readMs });
    }
  }

  return {
    pods,
    routes: table.routes.length,
    rejections: table.rejections.length,
    confBytes: text.length,
    rssBeforeMiB,
    rssAfterMiB,
    peakRssMiB,
    coldTableMs,
    coldRenderMs,
    warmTableMs,
    warmRenderMs,
    referenceTableMs,
    referenceRenderMs,
    changes: changeResults,
  };
}

// --- parse: a manifest as kubectl prints it -------------------------------------------

export interface ParseResult {
  pods: number;
  jsonBytes: number;
  yamlBytes: number;
  /** Whether the YAML took the quick path (js-yaml). */
  yamlReadQuickly: boolean;
  jsonParseMs: number[];
  manifestJsonMs: number[];
  manifestYamlMs: number[];
  yamlPackageMs: number | null;
}

async function parseTask(pods: number, withYamlPackage: boolean): Promise<ParseResult> {
  const list = { apiVersion: 'v1', kind: 'List', items: [...benchPods(pods), ...benchSecrets(pods)], metadata: { resourceVersion: '' } };
  const json = JSON.stringify(list, null, 4);
  const yaml = jsyaml.dump(list, { lineWidth: -1, noRefs: true });
  const runs = 3;
  const jsonParseMs: number[] = [];
  const manifestJsonMs: number[] = [];
  const manifestYamlMs: number[] = [];
  for (let r = 0; r < runs; r++) {
    jsonParseMs.push(timed(() => JSON.parse(json) as unknown)[1]);
    const [fromJson, jsonMs] = timed(() => parseManifest(json, 'pods.json'));
    manifestJsonMs.push(jsonMs);
    const [fromYaml, yamlMs] = timed(() => parseManifest(yaml, 'pods.yaml'));
    manifestYamlMs.push(yamlMs);
    if (fromJson.pods.length !== pods || fromYaml.pods.length !== pods) throw new Error('a manifest lost pods');
  }
  let yamlPackageMs: number | null = null;
  if (withYamlPackage) {
    // What parseManifest did before: the yaml package's parseAllDocuments and toJS.
    yamlPackageMs = timed(() => (parseAllDocuments(yaml) as Array<{ toJS(): unknown }>).map((d) => d.toJS()))[1];
  }
  return {
    pods,
    jsonBytes: json.length,
    yamlBytes: yaml.length,
    yamlReadQuickly: quickDocuments(yaml) !== null,
    jsonParseMs,
    manifestJsonMs,
    manifestYamlMs,
    yamlPackageMs,
  };
}

// --- nginx: nginx -t and reload until live through the real data plane ----------------

/** One server block and one upstream (two pods) per route, as issue 8 measured reloads. */
function nginxTable(routes: number, variant: number): RouteTable {
  const list: Route[] = [];
  for (let i = 0; i < routes; i++) {
    const backends = ['a', 'b'].map((x, j) => ({ pod: `r${i}-${x}`, namespace: 'bench', ip: `127.0.0.${2 + j}`, port: 9000 + variant }));
    list.push({ host: `r${i}.bench.test`, path: '/', namespace: 'bench', apiKey: null, backends });
  }
  return { routes: list.sort(compareRoutes), rejections: [] };
}

export interface NginxResult {
  routes: number;
  skipped?: string;
  confBytes: number;
  applyMs: number[];
  checkMs: number[];
}

async function nginxTask(routes: number, repeats: number): Promise<NginxResult> {
  const binary = findNginxBinary('nginx');
  if (binary === null) return { routes, skipped: 'nginx not found (apt-get install -y nginx)', confBytes: 0, applyMs: [], checkMs: [] };
  const prefix = await mkdtemp(join(tmpdir(), 'k8s-router-bench-nginx-'));
  // nginx's workers run as another user and must reach their temp directories.
  await chmod(prefix, 0o755);
  const port = await pickFreeLoopbackPort();
  const config = defaultConfig({ port: String(port), listenAddress: '127.0.0.1' });
  const renderer = new IncrementalNginxRenderer();
  const plane = createNginxDataPlane({
    nginxBinary: binary,
    prefix,
    render: (table, runtime) => renderer.render(table, { ...config, runtime }),
    confirmTimeoutMs: 120_000,
    stopTimeouts: { gracefulMs: 10_000, fastMs: 5_000 },
  });
  try {
    await plane.apply(nginxTable(1, 0));
    const applyMs: number[] = [];
    const checkMs: number[] = [];
    let confBytes = 0;
    for (let r = 0; r < repeats; r++) {
      const table = nginxTable(routes, r + 1);
      const [, ms] = await timedAsync(() => plane.apply(table));
      applyMs.push(ms);
      const started = performance.now();
      const verdict = await checkNginxConfig({ nginxBinary: binary, prefix, confPath: plane.files.conf, timeoutMs: 120_000 });
      checkMs.push(performance.now() - started);
      if (!verdict.ok) throw new Error(`nginx -t refused the config: ${verdict.output}`);
      confBytes = renderNginxConf(table, config).length;
    }
    return { routes, confBytes, applyMs, checkMs };
  } finally {
    await plane.close();
    await rm(prefix, { recursive: true, force: true });
  }
}

async function timedAsync<T>(work: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await work();
  return [value, performance.now() - started];
}

// --- stall: the proxy's event loop while the table is rebuilt ---------------------------

/** Pods and Secrets held in memory and handed out as the Kubernetes source does: sorted by namespace/name. */
class MemorySource implements ObjectSource {
  pods: Pod[] = [];
  secrets: Secret[] = [];
  /** Time spent in snapshot(), the source's share of a rebuild. */
  snapshotMs = 0;
  private onChange: (() => void) | null = null;
  async start(onChange: () => void): Promise<void> {
    this.onChange = onChange;
  }
  snapshot(): { pods: Pod[]; secrets: Secret[] } {
    const started = performance.now();
    const byKey = <T extends Pod | Secret>(items: T[]): T[] =>
      items
        .map((item) => [objectKey(item), item] as const)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([, item]) => item);
    const snapshot = { pods: byKey(this.pods), secrets: byKey(this.secrets) };
    this.snapshotMs += performance.now() - started;
    return snapshot;
  }
  async stop(): Promise<void> {
    this.onChange = null;
  }
  changed(): void {
    this.onChange?.();
  }
}

export interface StallWindow {
  scenario: string;
  /** Epoch milliseconds, comparable with the load generator's clock. */
  startedAt: number;
  endedAt: number;
  /** monitorEventLoopDelay over the window (resolution 1 ms). */
  loopDelayMaxMs: number;
  loopDelayP99Ms: number;
  rebuilds: number;
  /** Controller busy time (snapshot included), and the snapshot's share. */
  buildMs: number;
  snapshotMs: number;
  buildPauses: number;
  /** Garbage-collection pauses in the window: the longest, and all together. */
  gcMaxMs: number;
  gcTotalMs: number;
}

const epochNow = (): number => performance.timeOrigin + performance.now();

async function stallTask(pods: number, podPort: number, scenarios: string[]): Promise<unknown> {
  const config = defaultConfig({ listenAddress: '127.0.0.1' });
  // Pod 0 is the one the load goes to: it is the pod server of the benchmark.
  const podsAt = (generation: number, ipOf: (i: number) => string): Pod[] =>
    Array.from({ length: pods }, (_, i) => benchPod(i, i === 0 ? { ip: () => '127.0.0.1', port: podPort } : { ip: ipOf, generation }));
  const source = new MemorySource();
  source.secrets = benchSecrets(pods);
  source.pods = scenarios.includes('first list') ? podsAt(0, () => '10.0.0.1').slice(0, 1) : podsAt(0, (i) => `10.1.${(i >> 8) & 255}.${i & 255}`);
  const proxy = await startProxy({ port: 0, host: '127.0.0.1', apiKeyHeader: config.apiKeyHeader });
  // Logging at info as `run` does (what a new table logs is part of the work), to nowhere.
  const logger = pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: true }));
  const controller = createController({ config, source, dataPlanes: [proxy], holdOffMs: 0, maxDelayMs: 0, logger });
  await controller.start();
  const key = benchSecrets(1)[0]?.data?.['api-key'] as string;
  process.stdout.write(`READY ${JSON.stringify({ port: proxy.port, host: hostsOf(0)[0], apiKey: key })}\n`);
  const lines = createInterface({ input: process.stdin });
  await new Promise<void>((resolve) => lines.once('line', () => resolve()));
  await sleep(500);

  const windows: StallWindow[] = [];
  // GC pauses stop the loop too, and no slicing shortens them: counted apart.
  const pauses: Array<{ at: number; ms: number }> = [];
  const gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) pauses.push({ at: performance.timeOrigin + entry.startTime, ms: entry.duration });
  });
  gc.observe({ entryTypes: ['gc'] });
  const measure = async (scenario: string, act: () => Promise<void>): Promise<void> => {
    await sleep(300);
    const before = controller.stats();
    const snapshotBefore = source.snapshotMs;
    const histogram = monitorEventLoopDelay({ resolution: 1 });
    histogram.enable();
    const startedAt = epochNow();
    await act();
    await controller.idle();
    const endedAt = epochNow();
    histogram.disable();
    await sleep(50); // GC entries arrive asynchronously
    const during = pauses.filter((p) => p.at >= startedAt && p.at <= endedAt).map((p) => p.ms);
    const after = controller.stats();
    windows.push({
      scenario,
      startedAt,
      endedAt,
      loopDelayMaxMs: histogram.max / 1e6,
      loopDelayP99Ms: histogram.percentile(99) / 1e6,
      rebuilds: after.tablesBuilt - before.tablesBuilt,
      buildMs: after.buildMsTotal - before.buildMsTotal,
      snapshotMs: source.snapshotMs - snapshotBefore,
      buildPauses: after.buildPauses - before.buildPauses,
      gcMaxMs: Math.max(0, ...during),
      gcTotalMs: during.reduce((a, b) => a + b, 0),
    });
  };
  /** Replaces the pods, then gives the loop a moment so that making them is not counted. */
  const prepared = async (next: Pod[]): Promise<Pod[]> => {
    await sleep(200);
    return next;
  };

  for (const scenario of scenarios) {
    if (scenario === 'idle') {
      await measure(scenario, () => sleep(1_000));
    } else if (scenario === 'one pod changes') {
      await measure(scenario, async () => {
        for (let n = 0; n < 10; n++) {
          const at = 1 + ((n * 7919) % (pods - 1));
          source.pods = source.pods.slice();
          source.pods[at] = changedPod('pod IP changes', source.pods[at] as Pod, n);
          source.changed();
          await controller.idle();
          await sleep(100);
        }
      });
    } else if (scenario === 'first list') {
      // From the probe pod alone (where the task starts, or put back now, unmeasured).
      source.pods = source.pods.slice(0, 1);
      source.changed();
      await controller.idle();
      const next = await prepared(podsAt(0, (i) => `10.1.${(i >> 8) & 255}.${i & 255}`));
      await measure(scenario, async () => {
        source.pods = next;
        source.changed();
      });
    } else if (scenario === 'relist, nothing changed') {
      const next = await prepared(source.pods.map((p) => structuredClone(p)));
      await measure(scenario, async () => {
        source.pods = next;
        source.changed();
      });
    } else if (scenario === 'relist, every pod changed') {
      const next = await prepared(podsAt(1, (i) => `10.2.${(i >> 8) & 255}.${i & 255}`));
      await measure(scenario, async () => {
        source.pods = next;
        source.changed();
      });
    } else {
      throw new Error(`no scenario ${scenario}`);
    }
  }
  gc.disconnect();
  const routes = controller.currentTable()?.routes.length ?? 0;
  process.stdout.write(`RESULT ${JSON.stringify({ pods, routes, windows })}\n`);
  // Serving until the load has stopped, so that its last requests are answered.
  await new Promise<void>((resolve) => lines.once('line', () => resolve()));
  await controller.stop();
  await proxy.close();
  lines.close();
  return null;
}

// --- entry -------------------------------------------------------------------------

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    pods: { type: 'string' },
    routes: { type: 'string' },
    repeats: { type: 'string', default: '3' },
    changes: { type: 'boolean', default: false },
    'yaml-package': { type: 'boolean', default: false },
    'pod-port': { type: 'string' },
    scenarios: { type: 'string', default: '' },
  },
});

async function main(): Promise<unknown> {
  const repeats = Number(values.repeats);
  switch (positionals[0]) {
    case 'build':
      return buildTask(Number(values.pods), values.changes, repeats);
    case 'parse':
      return parseTask(Number(values.pods), values['yaml-package']);
    case 'nginx':
      return nginxTask(Number(values.routes), repeats);
    case 'stall':
      return stallTask(Number(values.pods), Number(values['pod-port']), values.scenarios.split(';'));
    default:
      throw new Error(`unknown task ${String(positionals[0])}`);
  }
}

const result = await main();
// The stall task reports before it stops serving.
if (result !== null) process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
process.exit(0);
