// The measurements of bench/control-plane.ts, one per process: that script compiles this
// file with the project (tsc, as `npm run build` does) and runs each task in a fresh
// plain-node child, so that sizes do not share a heap, the RSS is the router's and not
// tsx's, and the code measured is the code that ships. Each task prints one line
// `RESULT <json>` on standard output.
//
//   node <build>/bench/lib/control-plane-tasks.js build --pods N [--changes] [--repeats R]
//   node <build>/bench/lib/control-plane-tasks.js parse --pods N [--no-yaml]
//   node <build>/bench/lib/control-plane-tasks.js nginx --routes N [--repeats R]
//   node <build>/bench/lib/control-plane-tasks.js stall --pods N --pod-port P --scenarios 'a;b;...'

import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance, PerformanceObserver } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { findNginxBinary } from '../../nginx/binary.js';
import { checkNginxConfig } from '../../nginx/check.js';
import { IncrementalNginxRenderer } from '../../nginx/incremental-render.js';
import { createNginxDataPlane } from '../../nginx/process.js';
import { renderNginxConf, type NginxRuntime } from '../../nginx/render.js';
import { byteLengthOf, PieceHashes, textOf, withVersion } from '../../nginx/conf-pieces.js';
import { writeSynced } from '../../nginx/files.js';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { startProxy } from '../../proxy/server.js';
import { createController } from '../../src/control/controller.js';
import { defaultConfig, type RouterConfig } from '../../src/core/config.js';
import { IncrementalRouteTable } from '../../src/core/incremental-table.js';
import { type Pod, type Secret } from '../../src/core/kube-objects.js';
import { parseManifest } from '../../src/core/manifest.js';
import { buildRouteTable, compareRoutes, type Route, type RouteTable } from '../../src/core/route-table.js';
import { createManifestSource } from '../../src/sources/manifest-source.js';
import type { ObjectSource } from '../../src/sources/source.js';
import { benchPod, benchPods, benchSecrets, hostsOf, slimBenchPod, slimBenchPods } from './cluster.js';

const MiB = 2 ** 20;

function timed<T>(work: () => T): [T, number] {
  const started = performance.now();
  const value = work();
  return [value, performance.now() - started];
}

/** The managed nginx's runtime options, with the placeholder its manager puts the version in. */
const RUNTIME: NginxRuntime = {
  pidFile: '/run/k8s-router/nginx.pid',
  errorLog: '/run/k8s-router/error.log',
  accessLog: '/run/k8s-router/access.log',
  tempDir: '/run/k8s-router/tmp',
  status: { port: 18081, configVersion: 'vPLACEHOLDER0123456789abcd' },
};

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
        metadata: {
          ...metadata,
          name: `replacement-${n}`,
          annotations: { ...metadata.annotations, routingHosts: `new-${n}.example.com www-new-${n}.example.org` },
        },
      };
    case 'pod turns not ready':
      return {
        ...pod,
        status: { ...pod.status, conditions: [{ type: 'Ready', status: n % 2 === 0 ? 'False' : 'True' }] },
      };
    case 'nothing changes':
      return pod;
  }
}

export interface BuildResult {
  pods: number;
  /** "slim": as the cluster source keeps them (src/sources/slim-objects.ts); "full": as the API server sends them. */
  podObjects: 'slim' | 'full';
  routes: number;
  rejections: number;
  confBytes: number;
  confPieces: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  peakRssMiB: number;
  coldTableMs: number;
  coldRenderMs: number;
  /** The nginx manager's version of the first config: SHA-256 of every piece (nginx/conf-pieces.ts). */
  coldHashMs: number;
  warmTableMs: number[];
  warmRenderMs: number[];
  referenceTableMs: number[];
  referenceRenderMs: number[];
  /**
   * Per change: the table, the render (as the manager renders, with its runtime), the
   * manager's version of the config (hashing the pieces that changed) and its write of the
   * pieces to a file and fsync (in the thread pool, off the event loop; wall time).
   */
  changes: Array<{ kind: ChangeKind; tableMs: number[]; renderMs: number[]; hashMs: number[]; writeMs: number[] }>;
}

/** The same build again in fresh builders (a relist that changed everything), JIT warm, and the reference. */
interface WarmBuilds {
  warmTableMs: number[];
  warmRenderMs: number[];
  referenceTableMs: number[];
  referenceRenderMs: number[];
  /** The reference renderNginxConf's config, to check the incremental one against. */
  referenceText: string;
}

function warmBuilds(config: RouterConfig, objects: Pod[], secrets: Secret[], repeats: number): WarmBuilds {
  const warm: WarmBuilds = {
    warmTableMs: [],
    warmRenderMs: [],
    referenceTableMs: [],
    referenceRenderMs: [],
    referenceText: '',
  };
  for (let r = 0; r < repeats; r++) {
    const [t, tableMs] = timed(() => new IncrementalRouteTable(config).update(objects, secrets));
    warm.warmTableMs.push(tableMs);
    warm.warmRenderMs.push(timed(() => new IncrementalNginxRenderer().pieces(t, config))[1]);
    const [reference, refTableMs] = timed(() => buildRouteTable(config, objects, secrets));
    warm.referenceTableMs.push(refTableMs);
    const [conf, refRenderMs] = timed(() => renderNginxConf(reference, config));
    warm.referenceRenderMs.push(refRenderMs);
    warm.referenceText = conf;
  }
  return warm;
}

type ChangeResult = BuildResult['changes'][number];

/** The builder and renderer of the first build, and the nginx manager's state after it. */
interface FirstBuild {
  config: RouterConfig;
  builder: IncrementalRouteTable;
  renderer: IncrementalNginxRenderer;
  secrets: Secret[];
  hashes: PieceHashes;
  /** The pods as the last change left them. */
  current: Pod[];
}

const CHANGE_KINDS: ChangeKind[] = [
  'pod IP changes',
  'pod replaced (new name and hosts)',
  'pod turns not ready',
  'nothing changes',
];

/** 30 changes of one kind, one after the other, each handled as the manager handles a table. */
async function measureChangeKind(kind: ChangeKind, first: FirstBuild, dir: string): Promise<ChangeResult> {
  const options = { ...first.config, runtime: RUNTIME };
  const placeholder = RUNTIME.status?.configVersion as string;
  const result: ChangeResult = { kind, tableMs: [], renderMs: [], hashMs: [], writeMs: [] };
  for (let n = 0; n < 30; n++) {
    const at = (n * 7919 + 13) % first.current.length;
    const next = first.current.slice();
    next[at] = changedPod(kind, first.current[at] as Pod, n);
    first.current = next;
    const [t, ms] = timed(() => first.builder.update(first.current, first.secrets));
    result.tableMs.push(ms);
    const [draft, renderMs] = timed(() => first.renderer.pieces(t, options));
    result.renderMs.push(renderMs);
    const [versioned, hashMs] = timed(() => withVersion(draft, placeholder, first.hashes));
    result.hashMs.push(hashMs);
    const started = performance.now();
    await writeSynced(join(dir, `nginx.conf.${n}`), versioned?.text ?? []);
    result.writeMs.push(performance.now() - started);
    await rm(join(dir, `nginx.conf.${n}`));
  }
  return result;
}

/**
 * One changed pod at a time, in the builder of the first build, and as the nginx manager
 * handles each table: render with its runtime, version, write.
 */
async function measureChanges(first: FirstBuild, table: RouteTable): Promise<ChangeResult[]> {
  const dir = await mkdtemp(join(tmpdir(), 'k8s-router-bench-conf-'));
  const placeholder = RUNTIME.status?.configVersion as string;
  // The manager's state before the first change: the first table rendered and versioned.
  withVersion(first.renderer.pieces(table, { ...first.config, runtime: RUNTIME }), placeholder, first.hashes);
  const changeResults: ChangeResult[] = [];
  try {
    for (const kind of CHANGE_KINDS) changeResults.push(await measureChangeKind(kind, first, dir));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return changeResults;
}

async function buildTask(pods: number, changes: boolean, repeats: number, full: boolean): Promise<BuildResult> {
  const config = defaultConfig();
  const objects = full ? benchPods(pods) : slimBenchPods(pods);
  const secrets = benchSecrets(pods);
  const rssBeforeMiB = process.memoryUsage().rss / MiB;

  // The first build and render of the process, as a router's first list.
  const builder = new IncrementalRouteTable(config);
  const renderer = new IncrementalNginxRenderer();
  const [table, coldTableMs] = timed(() => builder.update(objects, secrets));
  const [pieces, coldRenderMs] = timed(() => renderer.pieces(table, config));
  const coldHashMs = timed(() => new PieceHashes().version(pieces))[1];
  const peakRssMiB = maxRssMiB();
  const rssAfterMiB = process.memoryUsage().rss / MiB;
  const text = textOf(pieces);

  const { referenceText, ...warm } = warmBuilds(config, objects, secrets, repeats);
  if (referenceText !== text) throw new Error('the incremental nginx.conf differs from the reference');
  const first: FirstBuild = { config, builder, renderer, secrets, hashes: new PieceHashes(), current: objects };
  const changeResults = changes ? await measureChanges(first, table) : [];
  return {
    pods,
    podObjects: full ? 'full' : 'slim',
    routes: table.routes.length,
    rejections: table.rejections.length,
    confBytes: byteLengthOf(pieces),
    confPieces: pieces.length,
    rssBeforeMiB,
    rssAfterMiB,
    peakRssMiB,
    coldTableMs,
    coldRenderMs,
    coldHashMs,
    ...warm,
    changes: changeResults,
  };
}

// --- parse: a manifest as kubectl prints it -------------------------------------------

export interface ParseResult {
  pods: number;
  jsonBytes: number;
  /** Null when YAML was not measured at this size (it takes the yaml package seconds). */
  yamlBytes: number | null;
  jsonParseMs: number[];
  manifestJsonMs: number[];
  manifestYamlMs: number[];
}

/** A v1 List as `kubectl get pods,secrets -A -o yaml` prints it. */
function yamlText(list: object): string {
  return stringify(list, { lineWidth: 0, aliasDuplicateObjects: false });
}

async function parseTask(pods: number, withYaml: boolean): Promise<ParseResult> {
  const list = {
    apiVersion: 'v1',
    kind: 'List',
    items: [...benchPods(pods), ...benchSecrets(pods)],
    metadata: { resourceVersion: '' },
  };
  const json = JSON.stringify(list, null, 4);
  const yaml = withYaml ? yamlText(list) : null;
  const runs = 3;
  const jsonParseMs: number[] = [];
  const manifestJsonMs: number[] = [];
  const manifestYamlMs: number[] = [];
  for (let r = 0; r < runs; r++) {
    jsonParseMs.push(timed(() => JSON.parse(json) as unknown)[1]);
    const [fromJson, jsonMs] = timed(() => parseManifest(json, 'pods.json'));
    manifestJsonMs.push(jsonMs);
    if (fromJson.pods.length !== pods) throw new Error('a manifest lost pods');
    if (yaml === null) continue;
    const [fromYaml, yamlMs] = timed(() => parseManifest(yaml, 'pods.yaml'));
    manifestYamlMs.push(yamlMs);
    if (fromYaml.pods.length !== pods) throw new Error('a manifest lost pods');
  }
  return { pods, jsonBytes: json.length, yamlBytes: yaml?.length ?? null, jsonParseMs, manifestJsonMs, manifestYamlMs };
}

// --- nginx: nginx -t and reload until live through the real data plane ----------------

/** One server block and one upstream (two pods) per route: the shape whose reloads are slowest per route. */
function nginxTable(routes: number, variant: number): RouteTable {
  const list: Route[] = [];
  for (let i = 0; i < routes; i++) {
    const backends = ['a', 'b'].map((x, j) => ({
      pod: `r${i}-${x}`,
      namespace: 'bench',
      ip: `127.0.0.${2 + j}`,
      port: 9000 + variant,
    }));
    list.push({ host: `r${i}.bench.test`, path: '/', namespace: 'bench', apiKey: null, affinity: null, backends });
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
  if (binary === null)
    return { routes, skipped: 'nginx not found (apt-get install -y nginx)', confBytes: 0, applyMs: [], checkMs: [] };
  const prefix = await mkdtemp(join(tmpdir(), 'k8s-router-bench-nginx-'));
  // nginx's workers run as another user and must reach their temp directories.
  await chmod(prefix, 0o755);
  const port = await pickFreeLoopbackPort();
  const config = defaultConfig({ port: String(port), listenAddress: '127.0.0.1' });
  const renderer = new IncrementalNginxRenderer();
  const plane = createNginxDataPlane({
    nginxBinary: binary,
    prefix,
    render: (table, runtime) => renderer.pieces(table, { ...config, runtime }),
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
      const verdict = await checkNginxConfig({
        nginxBinary: binary,
        prefix,
        confPath: plane.files.conf,
        timeoutMs: 120_000,
      });
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

/**
 * Pods and Secrets held in memory and handed out as the Kubernetes source does: a copy of
 * its objects in the order it keeps them (a changed object where the old one was).
 */
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
    const snapshot = { pods: this.pods.slice(), secrets: this.secrets.slice() };
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

/** A manifest source with the time its snapshots took counted, as MemorySource's. */
function timedSource(source: ObjectSource): ObjectSource & { snapshotMs: number } {
  const timed = {
    snapshotMs: 0,
    start: (onChange: () => void) => source.start(onChange),
    stop: () => source.stop(),
    snapshot: () => {
      const started = performance.now();
      const snapshot = source.snapshot();
      timed.snapshotMs += performance.now() - started;
      return snapshot;
    },
  };
  return timed;
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

/** A manifest of these pods and their Secrets, as `kubectl get pods,secrets -A -o json` or `-o yaml` prints it. */
function manifestText(format: 'json' | 'yaml', pods: Pod[], secrets: Secret[]): string {
  const list = { apiVersion: 'v1', kind: 'List', items: [...pods, ...secrets], metadata: { resourceVersion: '' } };
  return format === 'json' ? JSON.stringify(list, null, 4) : yamlText(list);
}

type Controller = ReturnType<typeof createController>;

/**
 * Measures windows on the event loop: from an act until the controller is idle again, the
 * loop's delay, the controller's work and the garbage-collection pauses in between.
 */
class WindowMeter {
  readonly windows: StallWindow[] = [];
  // GC pauses stop the loop too, and no slicing shortens them: counted apart.
  private readonly pauses: Array<{ at: number; ms: number }> = [];
  private readonly gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries())
      this.pauses.push({ at: performance.timeOrigin + entry.startTime, ms: entry.duration });
  });

  constructor(
    private readonly controller: Controller,
    private readonly source: ObjectSource & { snapshotMs: number },
  ) {
    this.gc.observe({ entryTypes: ['gc'] });
  }

  async measure(scenario: string, act: () => Promise<void>): Promise<void> {
    await sleep(300);
    const before = this.controller.stats();
    const snapshotBefore = this.source.snapshotMs;
    const histogram = monitorEventLoopDelay({ resolution: 1 });
    histogram.enable();
    const startedAt = epochNow();
    await act();
    await this.controller.idle();
    const endedAt = epochNow();
    histogram.disable();
    await sleep(50); // GC entries arrive asynchronously
    const during = this.pauses.filter((p) => p.at >= startedAt && p.at <= endedAt).map((p) => p.ms);
    const after = this.controller.stats();
    this.windows.push({
      scenario,
      startedAt,
      endedAt,
      loopDelayMaxMs: histogram.max / 1e6,
      loopDelayP99Ms: histogram.percentile(99) / 1e6,
      rebuilds: after.tablesBuilt - before.tablesBuilt,
      buildMs: after.buildMsTotal - before.buildMsTotal,
      snapshotMs: this.source.snapshotMs - snapshotBefore,
      buildPauses: after.buildPauses - before.buildPauses,
      gcMaxMs: Math.max(0, ...during),
      gcTotalMs: during.reduce((a, b) => a + b, 0),
    });
  }

  stop(): void {
    this.gc.disconnect();
  }
}

/** Gives the loop a moment after making the next objects, so that making them is not counted. */
async function prepared<T>(next: T): Promise<T> {
  await sleep(200);
  return next;
}

/** What the scenarios of one stall task act on. */
interface StallRun {
  pods: number;
  /** The pods of a generation, pod 0 the benchmark's pod server, the others at ipOf(i). */
  podsAt(generation: number, ipOf: (i: number) => string): Pod[];
  memory: MemorySource;
  manifest: 'json' | 'yaml' | null;
  manifestFile: string;
  controller: Controller;
  meter: WindowMeter;
  /** How many times the manifest has been written. */
  generation: number;
}

const addressIn = (network: string) => (i: number) => `${network}.${(i >> 8) & 255}.${i & 255}`;

/** Hands the memory source's next pods to the controller, measured. */
function relistTo(run: StallRun, scenario: string, next: Pod[]): Promise<void> {
  return run.meter.measure(scenario, async () => {
    run.memory.pods = next;
    run.memory.changed();
  });
}

async function onePodChanges(run: StallRun, scenario: string): Promise<void> {
  await run.meter.measure(scenario, async () => {
    for (let n = 0; n < 10; n++) {
      const at = 1 + ((n * 7919) % (run.pods - 1));
      run.memory.pods = run.memory.pods.slice();
      run.memory.pods[at] = changedPod('pod IP changes', run.memory.pods[at] as Pod, n);
      run.memory.changed();
      await run.controller.idle();
      await sleep(100);
    }
  });
}

async function firstList(run: StallRun, scenario: string): Promise<void> {
  // From the probe pod alone (where the task starts, or put back now, unmeasured).
  run.memory.pods = run.memory.pods.slice(0, 1);
  run.memory.changed();
  await run.controller.idle();
  await relistTo(run, scenario, await prepared(run.podsAt(0, addressIn('10.1'))));
}

/**
 * The file as an editor or `kubectl get ... > file` leaves it; the window runs from the
 * write until the proxy serves the table it gives.
 */
async function manifestWritten(run: StallRun, scenario: string): Promise<void> {
  const every = scenario.startsWith('manifest rewritten');
  const generation = ++run.generation;
  const next = every
    ? run.podsAt(generation, addressIn(`10.${2 + (generation % 200)}`))
    : run.memory.pods.map((p, i) =>
        i === 1 + ((generation * 7919) % (run.pods - 1)) ? changedPod('pod IP changes', p, generation) : p,
      );
  run.memory.pods = next;
  const text = await prepared(manifestText(run.manifest as 'json' | 'yaml', next, run.memory.secrets));
  await run.meter.measure(scenario, async () => {
    const served = new Promise<void>((resolve) => {
      const off = run.controller.subscribe(() => {
        off();
        resolve();
      });
    });
    await writeFile(run.manifestFile, text);
    await served;
  });
}

/** What each scenario does, by the name the parent gives it. */
const SCENARIOS: Record<string, (run: StallRun, scenario: string) => Promise<void>> = {
  idle: (run, scenario) => run.meter.measure(scenario, () => sleep(1_000)),
  'one pod changes': onePodChanges,
  'first list': firstList,
  'relist, nothing changed': async (run, scenario) =>
    relistTo(run, scenario, await prepared(run.memory.pods.map((p) => structuredClone(p)))),
  'relist, every pod changed': async (run, scenario) =>
    relistTo(run, scenario, await prepared(run.podsAt(1, addressIn('10.2')))),
  'manifest edit, one pod changes': manifestWritten,
  'manifest rewritten, every pod changed': manifestWritten,
};

/** The source the controller follows: the pods in memory, or a manifest file of them. */
async function stallSource(
  memory: MemorySource,
  manifest: 'json' | 'yaml' | null,
): Promise<{ source: ObjectSource & { snapshotMs: number }; manifestDir: string | null; manifestFile: string }> {
  if (manifest === null) return { source: memory, manifestDir: null, manifestFile: '' };
  const manifestDir = await mkdtemp(join(tmpdir(), 'k8s-router-bench-manifest-'));
  const manifestFile = join(manifestDir, `pods.${manifest}`);
  await writeFile(manifestFile, manifestText(manifest, memory.pods, memory.secrets));
  return { source: timedSource(createManifestSource({ file: manifestFile })), manifestDir, manifestFile };
}

async function stallTask(
  pods: number,
  podPort: number,
  scenarios: string[],
  manifest: 'json' | 'yaml' | null,
): Promise<unknown> {
  const config = defaultConfig({ listenAddress: '127.0.0.1' });
  // Pod 0 is the one the load goes to: it is the pod server of the benchmark. The cluster
  // source's pods are slim, a manifest's are whole.
  const podsAt = (generation: number, ipOf: (i: number) => string): Pod[] =>
    Array.from({ length: pods }, (_, i) =>
      (manifest === null ? slimBenchPod : benchPod)(
        i,
        i === 0 ? { ip: () => '127.0.0.1', port: podPort } : { ip: ipOf, generation },
      ),
    );
  const memory = new MemorySource();
  memory.secrets = benchSecrets(pods);
  memory.pods = scenarios.includes('first list')
    ? podsAt(0, () => '10.0.0.1').slice(0, 1)
    : podsAt(0, addressIn('10.1'));
  const { source, manifestDir, manifestFile } = await stallSource(memory, manifest);
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

  const meter = new WindowMeter(controller, source);
  const run: StallRun = { pods, podsAt, memory, manifest, manifestFile, controller, meter, generation: 0 };
  for (const scenario of scenarios) {
    const act = Object.hasOwn(SCENARIOS, scenario) ? SCENARIOS[scenario] : undefined;
    if (act === undefined) throw new Error(`no scenario ${scenario}`);
    await act(run, scenario);
  }
  meter.stop();
  const routes = controller.currentTable()?.routes.length ?? 0;
  process.stdout.write(`RESULT ${JSON.stringify({ pods, routes, windows: meter.windows })}\n`);
  // Serving until the load has stopped, so that its last requests are answered.
  await new Promise<void>((resolve) => lines.once('line', () => resolve()));
  await controller.stop();
  await proxy.close();
  if (manifestDir !== null) await rm(manifestDir, { recursive: true, force: true });
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
    'full-pods': { type: 'boolean', default: false },
    'no-yaml': { type: 'boolean', default: false },
    'pod-port': { type: 'string' },
    scenarios: { type: 'string', default: '' },
    manifest: { type: 'string' },
  },
});

async function main(): Promise<unknown> {
  const repeats = Number(values.repeats);
  switch (positionals[0]) {
    case 'build':
      return buildTask(Number(values.pods), values.changes, repeats, values['full-pods']);
    case 'parse':
      return parseTask(Number(values.pods), !values['no-yaml']);
    case 'nginx':
      return nginxTask(Number(values.routes), repeats);
    case 'stall':
      return stallTask(
        Number(values.pods),
        Number(values['pod-port']),
        values.scenarios.split(';'),
        (values.manifest as 'json' | 'yaml' | undefined) ?? null,
      );
    default:
      throw new Error(`unknown task ${String(positionals[0])}`);
  }
}

const result = await main();
// The stall task reports before it stops serving.
if (result !== null) process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
process.exit(0);
