import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
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
  seconds: number;
  changes: number;
  /** Per stable host and client kind. */
  load: Record<string, LoadSummary & { perSecond: number }>;
  tableChanges: number;
  /** nginx: reloads logged ("nginx serves the new config") and what they took, in ms. */
  reloads: number;
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

export async function runChurn(options: ChurnOptions): Promise<ChurnReport> {
  const { backend, durationMs, firstIp } = options;
  const everyMs = options.everyMs ?? 200;
  const ipCount = options.ipCount ?? 8;
  const terminationMs = options.terminationMs ?? 5_000;
  const clients = options.clients ?? { fresh: 4, keptAlive: 4 };
  const random = seededRandom(options.seed ?? 1);
  const dir = await workDir(`k8s-router-churn-${backend}-`);
  const api = await FakeApiServer.start();
  const live = new Map<string, LivePod>();
  const draining: Array<Promise<void>> = [];
  const everyPod: TestPod[] = [];
  let podSeq = 0;
  let router: RouterProcess | undefined;

  const addPod = async (host: string): Promise<void> => {
    const name = `${backend}-${++podSeq}`;
    const test = await startPod(name, `127.0.0.${firstIp + (podSeq % ipCount)}`);
    everyPod.push(test);
    live.set(name, { test, host, ready: true });
    api.upsert(podFor(test, { namespace: NAMESPACE, hosts: host, paths: ['/'] }));
  };
  const removePod = (name: string): void => {
    const pod = live.get(name);
    if (pod === undefined) return;
    live.delete(name);
    api.remove('Pod', NAMESPACE, name);
    draining.push(delay(terminationMs).then(() => pod.test.drain()));
  };
  const setReady = (name: string, ready: boolean): void => {
    const pod = live.get(name) as LivePod;
    pod.ready = ready;
    api.upsert(podFor(pod.test, { namespace: NAMESPACE, hosts: pod.host, paths: ['/'], ready }));
  };
  const podsOf = (host: string, readyOnly = true): string[] =>
    [...live].filter(([, p]) => p.host === host && (p.ready || !readyOnly)).map(([name]) => name);

  /** One change: what it is depends on the dice, never leaving a stable host without a ready pod. */
  const change = async (): Promise<void> => {
    const roll = random();
    const shared = podsOf(SHARED);
    const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)] as T;
    if (roll < 0.2 && shared.length < 5) return addPod(SHARED);
    if (roll < 0.4 && shared.length > 1) return removePod(pick(shared));
    if (roll < 0.5) {
      const notReady = podsOf(SHARED, false).filter((n) => !live.get(n)?.ready);
      if (notReady.length > 0) return setReady(pick(notReady), true);
      if (shared.length > 1) return setReady(pick(shared), false);
    }
    const host = pick(OTHERS);
    const others = podsOf(host, false);
    if (others.length === 0 || (others.length < 3 && random() < 0.5)) return addPod(host);
    return removePod(pick(others));
  };

  try {
    for (const host of [STEADY, STEADY, SHARED, SHARED, ...OTHERS]) await addPod(host);
    const port = await pickFreeLoopbackPort();
    router = await startRouterProcess(['--backend', backend], {
      PORT: String(port),
      LISTEN_ADDRESS: '127.0.0.1',
      NGINX_PREFIX: join(dir, 'nginx'),
      KUBECONFIG: api.kubeConfigFile(),
      LOG_LEVEL: 'info',
      ...options.env,
    });
    const routerLogs = router.logs;
    // Both stable hosts are served before the load starts.
    for (const host of [STEADY, SHARED]) {
      const warm = new LoadClient({ port, host }, { keepAlive: false, idPrefix: 'warm' });
      for (let i = 0; i < 200; i++) {
        const { outcome } = await warm.send();
        if (outcome.kind === 'response' && outcome.status === 200) break;
        await delay(50);
      }
    }
    const logsBefore = routerLogs.length;

    let loading = true;
    const load = Object.fromEntries(
      [STEADY, SHARED].flatMap((host) => [
        [`${host} new connection per request`, runLoad({ port, host }, clients.fresh, { keepAlive: false, idPrefix: `${host}-fresh` }, () => loading)],
        [`${host} kept alive`, runLoad({ port, host }, clients.keptAlive, { keepAlive: true, idPrefix: `${host}-kept` }, () => loading)],
      ]),
    );
    const startedAt = Date.now();
    let changes = 0;
    while (Date.now() - startedAt < durationMs) {
      const next = startedAt + (changes + 1) * everyMs;
      await change();
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

    // Once quiet, each stable host is served by exactly its ready pods.
    await delay(backend === 'nginx' ? 3_000 : 1_000);
    const final: ChurnReport['final'] = {};
    for (const host of [STEADY, SHARED]) {
      const served = new Set<string>();
      const probe = new LoadClient({ port, host }, { keepAlive: false, idPrefix: 'final' });
      for (let i = 0; i < 40; i++) {
        const { outcome } = await probe.send();
        served.add(outcome.kind === 'response' ? (outcome.pod ?? '?') : outcome.kind);
      }
      final[host] = { served: [...served].sort(), expected: podsOf(host).sort() };
    }

    const logs = routerLogs.slice(logsBefore);
    const reloadTimes = logs.filter((l) => l.msg === 'nginx serves the new config').map((l) => Number(l.ms));
    return {
      backend,
      seconds,
      changes,
      load: loadReport,
      tableChanges: logs.filter((l) => l.msg === 'route table changed').length,
      reloads: reloadTimes.length,
      reloadMs: reloadTimes.length === 0 ? null : { median: percentile(reloadTimes, 50), p95: percentile(reloadTimes, 95), max: Math.max(...reloadTimes) },
      final,
    };
  } finally {
    const exit = router?.stop();
    await Promise.all(draining);
    await Promise.all(everyPod.map((p) => p.close()));
    await api.close();
    const code = await exit;
    if (code !== 0) await endNginxOn(join(dir, 'nginx'));
    await rm(dir, { recursive: true, force: true });
    if (code !== undefined && code !== 0) throw new Error(`the router exited with ${code}`);
  }
}
