import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import type { NginxMode } from '../../src/core/config.js';
import { delay } from './eventually.js';
import { FakeApiServer } from './fake-api-server.js';
import { endNginxOn } from './nginx-wrapper.js';
import { LoadClient, runLoad, summarize, type LoadSummary } from './load-client.js';
import { podFor } from './manifests.js';
import { startPod, type TestPod } from './pods.js';
import { startRouterProcess, type RouterProcess } from './router-process.js';
import { seededRandom } from './seeded-random.js';
import { workDir } from './work-dir.js';

// Load on stable routes while pods come and go, through `k8s-router run` following the
// fake Kubernetes API server, with real pods on 127.0.0.x.
//
// - `steady.test`: two pods that never change; other routes churn around it.
// - `shared.test`: pods are added to it and removed from it, never its last ready one.
// - `other-N.test`: pods added and removed, sometimes the last one (the route goes away).
//
// Every `everyMs` one change is made on the API server: a pod added (its server started
// first, as a pod is running before it is ready), a pod removed, or a pod turned not
// ready and back. A removed pod behaves as a terminating one: it keeps serving for
// `terminationMs` (the router needs a moment to stop sending it requests; nginx's old
// workers finish the requests they sent it), then refuses new connections and finishes
// the ones in flight.

export interface ChurnOptions {
  backend: 'proxy' | 'nginx';
  /** How tables reach nginx (NGINX_MODE); documented when absent. */
  nginxMode?: NginxMode;
  durationMs: number;
  everyMs?: number;
  /** First octet of the 127.0.0.x addresses used for this run's pods. */
  firstIp: number;
  /** How many addresses, from firstIp, pods may take (several pods share one, on their own ports). */
  ipCount?: number;
  terminationMs?: number;
  clients?: { fresh: number; keptAlive: number };
  seed?: number;
  env?: Record<string, string>;
}

export interface ChurnReport {
  backend: 'proxy' | 'nginx';
  /** The data plane as the report names it: proxy, nginx documented, nginx dynamic. */
  plane: string;
  seconds: number;
  changes: number;
  /** Per stable host and client kind. */
  load: Record<string, LoadSummary & { perSecond: number }>;
  tableChanges: number;
  /** nginx: reloads logged ("nginx serves the new config") and what they took, in ms. */
  reloads: number;
  /** Dynamic nginx: tables sent without a reload ("nginx serves the new table"). */
  sends: number;
  reloadMs: { median: number; p95: number; max: number } | null;
  /** After the churn stops: the pods each stable host is served by, and the pods it should be. */
  final: Record<string, { served: string[]; expected: string[] }>;
}

interface LivePod {
  test: TestPod;
  host: string;
  ready: boolean;
}

const NAMESPACE = 'churn';
const STEADY = 'steady.test';
const SHARED = 'shared.test';
const OTHERS = ['other-1.test', 'other-2.test', 'other-3.test'];

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** The churn's pods and the fake API server that announces them; `change` makes one change the dice pick. */
class ChurnPods {
  readonly live = new Map<string, LivePod>();
  readonly draining: Array<Promise<void>> = [];
  readonly everyPod: TestPod[] = [];
  private podSeq = 0;

  constructor(
    private readonly api: FakeApiServer,
    private readonly options: ChurnOptions,
    private readonly random: () => number,
  ) {}

  async addPod(host: string): Promise<void> {
    const { firstIp } = this.options;
    const name = `${planeOf(this.options).replace(' ', '-')}-${++this.podSeq}`;
    const test = await startPod(name, `127.0.0.${firstIp + (this.podSeq % (this.options.ipCount ?? 8))}`);
    this.everyPod.push(test);
    this.live.set(name, { test, host, ready: true });
    this.api.upsert(podFor(test, { namespace: NAMESPACE, hosts: host, paths: ['/'] }));
  }

  removePod(name: string): void {
    const pod = this.live.get(name);
    if (pod === undefined) return;
    this.live.delete(name);
    this.api.remove('Pod', NAMESPACE, name);
    this.draining.push(delay(this.options.terminationMs ?? 5_000).then(() => pod.test.drain()));
  }

  setReady(name: string, ready: boolean): void {
    const pod = this.live.get(name) as LivePod;
    pod.ready = ready;
    this.api.upsert(podFor(pod.test, { namespace: NAMESPACE, hosts: pod.host, paths: ['/'], ready }));
  }

  podsOf(host: string, readyOnly = true): string[] {
    return [...this.live].filter(([, p]) => p.host === host && (p.ready || !readyOnly)).map(([name]) => name);
  }

  /** One change: what it is depends on the dice, never leaving a stable host without a ready pod. */
  async change(): Promise<void> {
    const random = this.random;
    const roll = random();
    const shared = this.podsOf(SHARED);
    const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)] as T;
    if (roll < 0.2 && shared.length < 5) return this.addPod(SHARED);
    if (roll < 0.4 && shared.length > 1) return this.removePod(pick(shared));
    if (roll < 0.5) {
      const notReady = this.podsOf(SHARED, false).filter((n) => !this.live.get(n)?.ready);
      if (notReady.length > 0) return this.setReady(pick(notReady), true);
      if (shared.length > 1) return this.setReady(pick(shared), false);
    }
    const host = pick(OTHERS);
    const others = this.podsOf(host, false);
    if (others.length === 0 || (others.length < 3 && random() < 0.5)) return this.addPod(host);
    return this.removePod(pick(others));
  }
}

/** Waits until both stable hosts are served, before the load starts. */
async function warmUp(port: number): Promise<void> {
  for (const host of [STEADY, SHARED]) {
    const warm = new LoadClient({ port, host }, { keepAlive: false, idPrefix: 'warm' });
    for (let i = 0; i < 200; i++) {
      const { outcome } = await warm.send();
      if (outcome.kind === 'response' && outcome.status === 200) break;
      await delay(50);
    }
  }
}

/** Once quiet: the pods each stable host is served by, and the ones it should be. */
async function finalServed(port: number, pods: ChurnPods): Promise<ChurnReport['final']> {
  const final: ChurnReport['final'] = {};
  for (const host of [STEADY, SHARED]) {
    const served = new Set<string>();
    const probe = new LoadClient({ port, host }, { keepAlive: false, idPrefix: 'final' });
    for (let i = 0; i < 40; i++) {
      const { outcome } = await probe.send();
      served.add(outcome.kind === 'response' ? (outcome.pod ?? '?') : outcome.kind);
    }
    final[host] = { served: [...served].sort(), expected: pods.podsOf(host).sort() };
  }
  return final;
}

/** The data plane as the report names it: proxy, nginx documented, nginx dynamic. */
function planeOf(options: ChurnOptions): string {
  return options.backend === 'proxy' ? 'proxy' : `nginx ${options.nginxMode ?? 'documented'}`;
}

/** Load on the stable hosts while `pods` changes every `everyMs`, and what the router did meanwhile. */
async function measureChurn(
  options: ChurnOptions,
  pods: ChurnPods,
  router: RouterProcess,
  port: number,
): Promise<ChurnReport> {
  const { backend, durationMs } = options;
  const everyMs = options.everyMs ?? 200;
  const clients = options.clients ?? { fresh: 4, keptAlive: 4 };
  const routerLogs = router.logs;
  await warmUp(port);
  const logsBefore = routerLogs.length;

  let loading = true;
  const load = Object.fromEntries(
    [STEADY, SHARED].flatMap((host) => [
      [
        `${host} new connection per request`,
        runLoad({ port, host }, clients.fresh, { keepAlive: false, idPrefix: `${host}-fresh` }, () => loading),
      ],
      [
        `${host} kept alive`,
        runLoad({ port, host }, clients.keptAlive, { keepAlive: true, idPrefix: `${host}-kept` }, () => loading),
      ],
    ]),
  );
  const startedAt = Date.now();
  let changes = 0;
  while (Date.now() - startedAt < durationMs) {
    const next = startedAt + (changes + 1) * everyMs;
    await pods.change();
    changes++;
    await delay(Math.max(0, next - Date.now()));
  }
  loading = false;
  const seconds = (Date.now() - startedAt) / 1000;
  const loadReport: ChurnReport['load'] = {};
  for (const [name, records] of Object.entries(load)) {
    const summary = summarize(await records);
    loadReport[name] = { ...summary, perSecond: Math.round(summary.requests / seconds) };
  }

  await delay(backend === 'nginx' ? 3_000 : 1_000);
  const final = await finalServed(port, pods);

  const logs = routerLogs.slice(logsBefore);
  const reloadTimes = logs.filter((l) => l.msg === 'nginx serves the new config').map((l) => Number(l.ms));
  return {
    backend,
    plane: planeOf(options),
    seconds,
    changes,
    load: loadReport,
    tableChanges: logs.filter((l) => l.msg === 'route table changed').length,
    reloads: reloadTimes.length,
    sends: logs.filter((l) => l.msg === 'nginx serves the new table').length,
    reloadMs:
      reloadTimes.length === 0
        ? null
        : { median: percentile(reloadTimes, 50), p95: percentile(reloadTimes, 95), max: Math.max(...reloadTimes) },
    final,
  };
}

export async function runChurn(options: ChurnOptions): Promise<ChurnReport> {
  const { backend } = options;
  const dir = await workDir(`k8s-router-churn-${planeOf(options).replace(' ', '-')}-`);
  const api = await FakeApiServer.start();
  const pods = new ChurnPods(api, options, seededRandom(options.seed ?? 1));
  let router: RouterProcess | undefined;
  let report: ChurnReport;
  let code: Awaited<ReturnType<RouterProcess['stop']>> | undefined;
  try {
    for (const host of [STEADY, STEADY, SHARED, SHARED, ...OTHERS]) await pods.addPod(host);
    const port = await pickFreeLoopbackPort();
    router = await startRouterProcess(['--backend', backend], {
      PORT: String(port),
      LISTEN_ADDRESS: '127.0.0.1',
      NGINX_PREFIX: join(dir, 'nginx'),
      KUBECONFIG: api.kubeConfigFile(),
      LOG_LEVEL: 'info',
      NGINX_MODE: options.nginxMode ?? 'documented',
      ...options.env,
    });
    report = await measureChurn(options, pods, router, port);
  } finally {
    const exit = router?.stop();
    await Promise.all(pods.draining);
    await Promise.all(pods.everyPod.map((p) => p.close()));
    await api.close();
    code = await exit;
    if (code !== 0) await endNginxOn(join(dir, 'nginx'));
    await rm(dir, { recursive: true, force: true });
  }
  // After the finally, so that a failure of the run itself is the error reported.
  if (code !== undefined && code !== 0) throw new Error(`the router exited with ${code}`);
  return report;
}
