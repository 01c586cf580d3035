import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import WebSocket from 'ws';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { delay } from './eventually.js';
import { FakeApiServer } from './fake-api-server.js';
import { endNginxOn } from './nginx-wrapper.js';
import { connectInspector, inspectorUrl, type Inspector } from './inspector.js';
import { podFor } from './manifests.js';
import { pod as podObject } from './objects.js';
import { startPods, type TestPod } from './pods.js';
import { startRouterProcess, type RouterProcess } from './router-process.js';
import { workDir } from './work-dir.js';

// Resource use of `k8s-router run` over many WebSocket connections and many object
// changes: open file descriptors and resident memory of the router process, sampled after
// a warm-up and again at the end. A leak per connection or per change shows as a level
// that keeps growing with the count; a level back where it was after warm-up shows none.
// (With nginx the connections go through nginx, so this watches what the router itself
// holds while it follows the changes and reloads nginx; nginx's own figures are reported.)

export interface LeakOptions {
  backend: 'proxy' | 'nginx';
  /** WebSocket connects and disconnects after the warm-up. */
  connections: number;
  /** Object changes on the API server after the warm-up. */
  changes: number;
  /** Each of the two, during warm-up. */
  warmUp: number;
  firstIp: number;
  /** WebSockets open at the same time. */
  concurrency?: number;
}

export interface Usage {
  fds: number;
  rssKiB: number;
}

/** The router's own figures: as found, and after a full garbage collection. */
export interface RouterUsage extends Usage {
  afterGc: Usage & { heapUsedKiB: number };
}

export interface LeakReport {
  backend: 'proxy' | 'nginx';
  connections: number;
  changes: number;
  seconds: number;
  failedConnections: number;
  /** The failed ones by what went wrong (an error code, a status, a missing echo). */
  failures: Failures;
  /**
   * The router's warnings and errors during the run (nginx exits, restarts, failed applies),
   * for a failure to be read.
   */
  routerTrouble: string[];
  afterWarmUp: RouterUsage;
  atEnd: RouterUsage;
  /** nginx processes (master and workers) at the same moments, for information. */
  nginx: { afterWarmUp: Usage; atEnd: Usage } | null;
  tableChanges: number;
  reloads: number;
}

const HOST = 'ws.test';
const NAMESPACE = 'leaks';
/** Pods that only change on the API server: their addresses take no traffic. */
const CHURNING_PODS = 40;

export async function usageOf(pid: number): Promise<Usage> {
  const fds = (await readdir(`/proc/${pid}/fd`)).length;
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKiB = Number(/^VmRSS:\s+([0-9]+) kB$/m.exec(status)?.[1] ?? NaN);
  return { fds, rssKiB };
}

async function nginxUsage(prefix: string): Promise<Usage | null> {
  const master = Number((await readFile(join(prefix, 'nginx.pid'), 'utf8').catch(() => '')).trim());
  if (!(master > 0)) return null;
  const children = (await readFile(`/proc/${master}/task/${master}/children`, 'utf8').catch(() => ''))
    .split(' ')
    .filter(Boolean)
    .map(Number);
  const total: Usage = { fds: 0, rssKiB: 0 };
  for (const pid of [master, ...children]) {
    const u = await usageOf(pid).catch(() => ({ fds: 0, rssKiB: 0 }));
    total.fds += u.fds;
    total.rssKiB += u.rssKiB;
  }
  return total;
}

/** Connects, exchanges one message, disconnects; null when all went well, else what went wrong. */
function webSocketCycle(port: number, n: number): Promise<string | null> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/chat`, { headers: { Host: HOST } });
    let problem: string | null = 'closed before the echo';
    const timer = setTimeout(() => {
      problem = 'no echo within 10 s';
      ws.terminate();
    }, 10_000);
    ws.on('open', () => ws.send(`m${n}`));
    ws.on('message', (data) => {
      const text = (data as Buffer).toString();
      problem = text.endsWith(`:m${n}`) ? null : `a wrong echo: ${text.slice(0, 60)}`;
      ws.close();
    });
    ws.on('unexpected-response', (_req, res) => {
      problem = `answered ${res.statusCode} instead of switching protocols`;
      ws.terminate();
    });
    ws.on('close', () => {
      clearTimeout(timer);
      resolve(problem);
    });
    ws.on('error', (err: NodeJS.ErrnoException) => {
      if (problem === 'closed before the echo') problem = err.code ?? err.message;
    });
  });
}

/** How many cycles failed, by what went wrong. */
export type Failures = Record<string, number>;

const countOf = (failures: Failures): number => Object.values(failures).reduce((a, b) => a + b, 0);

async function cycles(port: number, count: number, concurrency: number, failures: Failures): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const n = next++;
        const problem = await webSocketCycle(port, n);
        if (problem !== null) failures[problem] = (failures[problem] ?? 0) + 1;
      }
    }),
  );
}

/** `count` changes to pods that take no traffic: annotations and readiness flip, pods come and go. */
async function churn(api: FakeApiServer, count: number, from: number): Promise<void> {
  for (let i = from; i < from + count; i++) {
    const k = i % CHURNING_PODS;
    const name = `churning-${k}`;
    if (i % 7 === 3) api.remove('Pod', NAMESPACE, name);
    else {
      api.upsert(
        podObject(name, {
          namespace: NAMESPACE,
          ip: `10.9.${k}.${1 + (i % 200)}`,
          hosts: `churn-${k % 10}.test`,
          paths: `80:/p${i % 3}`,
          ports: [80],
          ready: i % 5 !== 0,
        }),
      );
    }
    // A steady stream (about 500 changes a second), not one burst the controller folds into one table.
    if (i % 10 === 9) await delay(20);
  }
}

/** The router's figures now, and again after a full garbage collection (V8 collects lazily; a leak survives it). */
async function routerUsage(pid: number, inspector: Inspector): Promise<RouterUsage> {
  const found = await usageOf(pid);
  await inspector.collectGarbage();
  const heap = await inspector.heapUsage();
  return { ...found, afterGc: { ...(await usageOf(pid)), heapUsedKiB: Math.round(heap.usedSize / 1024) } };
}

/** Waits until the router has been quiet for a moment, so samples are not taken mid-change. */
async function settle(router: RouterProcess): Promise<void> {
  let seen = router.logs.length;
  for (let quiet = 0; quiet < 10;) {
    await delay(100);
    quiet = router.logs.length === seen ? quiet + 1 : 0;
    seen = router.logs.length;
  }
}

export async function runLeaks(options: LeakOptions): Promise<LeakReport> {
  const { backend, firstIp } = options;
  const concurrency = options.concurrency ?? 20;
  const dir = await workDir(`k8s-router-leaks-${backend}-`);
  const prefix = join(dir, 'nginx');
  const api = await FakeApiServer.start();
  let pods: TestPod[] = [];
  let router: RouterProcess | undefined;
  let inspector: Inspector | undefined;
  let report: LeakReport;
  let code: Awaited<ReturnType<RouterProcess['stop']>> | undefined;
  try {
    pods = await startPods(`leaks-${backend}`, 2, firstIp);
    for (const p of pods) api.upsert(podFor(p, { namespace: NAMESPACE, hosts: HOST, paths: ['/'] }));
    const port = await pickFreeLoopbackPort();
    router = await startRouterProcess(
      ['--backend', backend],
      {
        PORT: String(port),
        LISTEN_ADDRESS: '127.0.0.1',
        NGINX_PREFIX: prefix,
        KUBECONFIG: api.kubeConfigFile(),
        LOG_LEVEL: 'info',
      },
      { nodeArgs: ['--inspect=127.0.0.1:0'] },
    );
    const r = router;
    const url = inspectorUrl(r.logs);
    if (url === null) throw new Error('the router did not print its inspector URL');
    inspector = await connectInspector(url);
    const failures: Failures = {};
    await cycles(port, options.warmUp, concurrency, failures);
    await churn(api, options.warmUp, 0);
    await settle(r);
    const afterWarmUp = await routerUsage(r.pid, inspector);
    const nginxAfterWarmUp = backend === 'nginx' ? await nginxUsage(prefix) : null;
    const logsBefore = r.logs.length;

    const startedAt = Date.now();
    await Promise.all([
      cycles(port, options.connections, concurrency, failures),
      churn(api, options.changes, options.warmUp),
    ]);
    const seconds = (Date.now() - startedAt) / 1000;
    await settle(r);
    const atEnd = await routerUsage(r.pid, inspector);
    const nginxAtEnd = backend === 'nginx' ? await nginxUsage(prefix) : null;
    const logs = r.logs.slice(logsBefore);
    report = {
      backend,
      connections: options.connections,
      changes: options.changes,
      seconds,
      failedConnections: countOf(failures),
      failures,
      afterWarmUp,
      atEnd,
      nginx: nginxAfterWarmUp && nginxAtEnd && { afterWarmUp: nginxAfterWarmUp, atEnd: nginxAtEnd },
      tableChanges: logs.filter((l) => l.msg === 'route table changed').length,
      reloads: logs.filter((l) => l.msg === 'nginx serves the new config').length,
      routerTrouble: r.logs
        .filter((l) => Number(l.level) >= 40)
        .map((l) => `${String(l.msg)} ${JSON.stringify({ ...l, msg: undefined, time: undefined })}`.slice(0, 300)),
    };
  } finally {
    inspector?.close();
    const exit = router?.stop();
    await Promise.all(pods.map((p) => p.close()));
    await api.close();
    code = await exit;
    if (code !== 0) await endNginxOn(prefix);
    await rm(dir, { recursive: true, force: true });
  }
  // After the finally, so that a failure of the run itself is the error reported.
  if (code !== undefined && code !== 0) throw new Error(`the router exited with ${code}`);
  return report;
}
