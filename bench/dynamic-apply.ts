// Dynamic nginx (NGINX_MODE=dynamic) at 10,000 routes, through the router's own nginx
// manager (createNginxDataPlane with the dynamic delivery, built as `k8s-router run` builds
// it: lib/managed-nginx.ts), in-process, against real pods on 127.0.3.x.
//
//   node --import tsx bench/dynamic-apply.ts [--quick] [--repetitions N] [--starts N] [--workers 1,2]
//
// For each WORKER_PROCESSES (1 and 2):
// 1. Start: from the first table (built already) to a freshly started nginx serving it on
//    every worker (the manager's first apply: nginx started, the table sent, each worker's
//    version confirmed), `--starts` times, each time a new nginx in a new prefix.
// 2. Memory: every route of that table requested once through the last nginx started,
//    then the resident set (and the proportional set) of its master and workers from
//    /proc; the same for documented nginx (the table rendered into nginx.conf) on the same
//    table, whose start is timed too.
// 3. Apply: on that nginx, `--repetitions` changes of each kind, one after the other (a pod
//    added to a route, that pod removed again, a pod with a new host, an API-key Secret set
//    in a namespace), each timed from the table being built to the manager's apply
//    resolving (every current worker serves the new version); after each, a request checks
//    that the change is served (the new host answers, the locked namespace answers 403
//    without its new key and 200 with it). nginx's reloads (the manager's count) and its
//    processes (master and workers, by pid and start time) are compared before and after.
// 4. A WebSocket to a route's pod stays open across 100 route changes: half of them add
//    a second pod to its own route or take it away again, the other half change another
//    route; after each the WebSocket must echo, and nginx's processes must be the same.
// --quick: 5 repetitions and 2 starts.

import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import WebSocket from 'ws';
import { defaultConfig, type RouterConfig } from '../src/core/config.js';
import { IncrementalRouteTable } from '../src/core/incremental-table.js';
import { objectKey, type Pod, type Secret } from '../src/core/kube-objects.js';
import type { RouteTable } from '../src/core/route-table.js';
import type { NginxDataPlane } from '../nginx/process.js';
import { pickFreeLoopbackPort } from '../nginx/status.js';
import type { ProcessIdentity } from '../nginx/workers.js';
import { sendRaw } from '../test/conformance/raw-http.js';
import { luaFailures } from '../test/support/dynamic-nginx.js';
import { NGINX_BINARY } from '../test/support/nginx-check.js';
import { apiKeySecret, pod } from '../test/support/objects.js';
import { startPod, type TestPod } from '../test/support/pods.js';
import { workDir } from '../test/support/work-dir.js';
import { benchSecrets, hostsOf, PODS_PER_NAMESPACE, slimBenchPod, slimBenchPods } from './lib/cluster.js';
import { managedNginx } from './lib/managed-nginx.js';
import { goneProcesses, memoryOf, newProcesses, nginxProcesses, type Memory } from './lib/nginx-processes.js';
import { invocation, writeReport, type Bar } from './lib/report.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    repetitions: { type: 'string' },
    starts: { type: 'string' },
    workers: { type: 'string' },
  },
});
const QUICK = args.quick === true;
const REPETITIONS = Number(args.repetitions ?? (QUICK ? 5 : 30));
const STARTS = Number(args.starts ?? (QUICK ? 2 : 5));
const WORKER_COUNTS = (args.workers ?? '1,2').split(',').map(Number);
/** The cluster of lib/cluster.ts: 4 routes per pod, so 10,000 routes. */
const CLUSTER_PODS = 2_500;
const WS_CHANGES = 100;
/** Odd namespaces have no key to begin with (lib/cluster.ts locks the even ones). */
const OPEN_NAMESPACES = Math.floor(CLUSTER_PODS / PODS_PER_NAMESPACE / 2);
/** Several pods share each address; their routes' pods all answer there. */
const POD_IPS = Array.from({ length: 8 }, (_, i) => `127.0.3.${i + 1}`);
const WS_HOST = 'ws.bench.test';
const WS_NAMESPACE = 'ws';
/** How long a request or a WebSocket echo may take before it counts as failed. */
const ANSWER_MS = 5_000;

const KINDS = ['pod added to a route', 'pod removed from a route', 'new host', 'API key set (a Secret)'] as const;
type Kind = (typeof KINDS)[number];

function log(line: string): void {
  process.stderr.write(`dynamic-apply: ${line}\n`);
}

function percentile(values: readonly number[], p: number): number {
  // Nearest rank: the smallest value with at least p% of the samples at or below it.
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1] ?? NaN;
}

const median = (values: readonly number[]): number => percentile(values, 50);
const fmt = (n: number, digits = 1): string => n.toFixed(digits);

// ---------------------------------------------------------------------------------------
// Pods, snapshots and the changes made to them

interface Pods {
  port: number;
  cluster: TestPod[];
  /** The WebSocket's pod, and the one that comes and goes on its route. */
  wsA: TestPod;
  wsB: TestPod;
  close(): Promise<void>;
}

/** Real pods on POD_IPS and two for the WebSocket, all on one port (the routes name one). */
async function startPods(): Promise<Pods> {
  for (let attempt = 1; ; attempt++) {
    const port = await pickFreeLoopbackPort();
    const started: TestPod[] = [];
    try {
      for (const [i, ip] of POD_IPS.entries()) started.push(await startPod(`pod-${i}`, ip, { port }));
      started.push(await startPod('ws-a', '127.0.3.101', { port }), await startPod('ws-b', '127.0.3.102', { port }));
    } catch (err) {
      await Promise.all(started.map((p) => p.close()));
      // The port was free on 127.0.0.1; another address may have it taken. Try another.
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 5) continue;
      throw err;
    }
    const [wsA, wsB] = started.slice(-2) as [TestPod, TestPod];
    return {
      port,
      cluster: started.slice(0, -2),
      wsA,
      wsB,
      close: async () => {
        await Promise.all(started.map((p) => p.close()));
      },
    };
  }
}

interface Snapshot {
  pods: readonly Pod[];
  secrets: readonly Secret[];
}

function baseSnapshot(port: number): Snapshot {
  return {
    pods: slimBenchPods(CLUSTER_PODS, { ip: (i) => POD_IPS[i % POD_IPS.length] as string, port }),
    secrets: benchSecrets(CLUSTER_PODS),
  };
}

/** A second pod for the routes of cluster pod `i`: same hosts and paths, another name and address. */
function replicaOf(i: number, port: number): Pod {
  const original = slimBenchPod(i, { ip: () => POD_IPS[(i + 1) % POD_IPS.length] as string, port });
  return {
    ...original,
    metadata: { ...original.metadata, name: `${original.metadata?.name ?? ''}-replica`, uid: `replica-${i}` },
  };
}

const withPod = (s: Snapshot, p: Pod): Snapshot => ({ ...s, pods: [...s.pods, p] });
const withoutPod = (s: Snapshot, gone: Pod): Snapshot => ({
  ...s,
  pods: s.pods.filter((p) => objectKey(p) !== objectKey(gone)),
});
const withSecret = (s: Snapshot, secret: Secret): Snapshot => ({
  ...s,
  secrets: [...s.secrets.filter((x) => x.metadata?.namespace !== secret.metadata?.namespace), secret],
});

/** A request through nginx and what came back: the status and the pod that answered. */
async function ask(
  port: number,
  host: string,
  path = '/',
  key?: { header: string; value: string },
): Promise<{ status: number; pod: string | null }> {
  const headers: [string, string][] = [
    ['Host', host],
    ...(key ? ([[key.header, key.value]] as [string, string][]) : []),
  ];
  const outcome = await sendRaw(
    port,
    { method: 'GET', target: path, headers: [...headers, ['Connection', 'close']] },
    ANSWER_MS,
  );
  if (outcome.kind !== 'response') return { status: 0, pod: null };
  return { status: outcome.status, pod: outcome.headers.find(([k]) => k.toLowerCase() === 'x-pod')?.[1] ?? null };
}

interface Change {
  kind: Kind;
  next: Snapshot;
  /** After the change is applied (`table` served): what requests show that should not be, or null. */
  check(routingPort: number, table: RouteTable): Promise<string | null>;
}

/** The key a request to `host` needs in `table`, if its namespace has one. */
function keyFor(table: RouteTable, host: string, header: string): { header: string; value: string } | undefined {
  const apiKey = table.routes.find((route) => route.host === host)?.apiKey ?? null;
  return apiKey === null ? undefined : { header, value: apiKey };
}

/**
 * `host` asked `times` times (with its key, if any): every answer a 200 from a pod, and
 * `want` among the pods that answered or `unwanted` not, as the change should have it. Each
 * worker visits a route's pods in turn, so with 2 pods and at most 2 workers, 8 requests
 * reach both on one worker at least.
 */
async function answeredBy(
  routingPort: number,
  table: RouteTable,
  header: string,
  host: string,
  pods: { want?: string; unwanted?: string },
): Promise<string | null> {
  const key = keyFor(table, host, header);
  const seen = new Set<string>();
  for (let i = 0; i < 8; i++) {
    const answer = await ask(routingPort, host, '/', key);
    if (answer.status !== 200 || answer.pod === null) return `${host}: ${answer.status} from ${answer.pod ?? 'no pod'}`;
    seen.add(answer.pod);
  }
  const from = [...seen].sort().join(', ');
  if (pods.want !== undefined && !seen.has(pods.want)) return `${host}: 8 answers from ${from}, none from ${pods.want}`;
  if (pods.unwanted !== undefined && seen.has(pods.unwanted))
    return `${host}: still answered by ${pods.unwanted} (${from})`;
  return null;
}

/** The four changes of repetition `r`, made one after the other from `s`. */
function changesOf(r: number, s: Snapshot, config: RouterConfig, port: number): Change[] {
  const target = (r * 97 + 13) % CLUSTER_PODS;
  const replica = replicaOf(target, port);
  // The pods of lib/cluster.ts answer on POD_IPS in turn; the replica on the next address.
  const replicaPod = `pod-${(target + 1) % POD_IPS.length}`;
  const [targetHost] = hostsOf(target);
  const header = config.apiKeyHeader;
  const served =
    (host: string, key?: { header: string; value: string }) =>
    async (routingPort: number): Promise<string | null> => {
      const answer = await ask(routingPort, host, '/', key);
      return answer.status === 200 && answer.pod !== null
        ? null
        : `${host}: ${answer.status} from ${answer.pod ?? 'no pod'}`;
    };
  const added = withPod(s, replica);
  const removed = withoutPod(added, replica);
  const freshHost = `fresh-${r}.example.net`;
  const fresh = pod(`fresh-${r}`, {
    namespace: 'fresh',
    ip: POD_IPS[r % POD_IPS.length],
    hosts: freshHost,
    paths: `${port}:/`,
    ports: [port],
  });
  const withFresh = withPod(removed, fresh);
  const namespace = 2 * (r % OPEN_NAMESPACES) + 1;
  const plainKey = `bench key ${r}`;
  const keyed = withSecret(withFresh, apiKeySecret(`ns-${namespace}`, plainKey));
  const lockedHost = `app-${namespace * PODS_PER_NAMESPACE}.ns-${namespace}.example.com`;
  const key = { header: config.apiKeyHeader, value: Buffer.from(plainKey).toString('base64') };
  return [
    {
      kind: 'pod added to a route',
      next: added,
      check: (routingPort, table) => answeredBy(routingPort, table, header, targetHost, { want: replicaPod }),
    },
    {
      kind: 'pod removed from a route',
      next: removed,
      check: (routingPort, table) => answeredBy(routingPort, table, header, targetHost, { unwanted: replicaPod }),
    },
    { kind: 'new host', next: withFresh, check: served(freshHost) },
    {
      kind: 'API key set (a Secret)',
      next: keyed,
      async check(routingPort) {
        const without = await ask(routingPort, lockedHost);
        if (without.status !== 403) return `${lockedHost} without its new key: ${without.status}, not 403`;
        return served(lockedHost, key)(routingPort);
      },
    },
  ];
}

// ---------------------------------------------------------------------------------------
// nginx

interface Run {
  workers: number;
  config: RouterConfig;
  builder: IncrementalRouteTable;
  snapshot: Snapshot;
}

const planes = new Set<NginxDataPlane>();
const warnings: string[] = [];
const logger = pino(
  { level: 'warn' },
  {
    write: (line: string) => {
      warnings.push(line);
      process.stderr.write(line);
    },
  },
);

function configFor(mode: 'documented' | 'dynamic', workers: number, routingPort: number): RouterConfig {
  return defaultConfig({
    port: String(routingPort),
    listenAddress: '127.0.0.1',
    nginxMode: mode,
    workerProcesses: String(workers),
  });
}

async function startNginx(
  config: RouterConfig,
  prefix: string,
  table: RouteTable,
): Promise<{ plane: NginxDataPlane; ms: number }> {
  const plane = await managedNginx(config, NGINX_BINARY, prefix, logger);
  planes.add(plane);
  const started = performance.now();
  await plane.apply(table);
  return { plane, ms: performance.now() - started };
}

async function closeNginx(plane: NginxDataPlane): Promise<string[]> {
  await plane.close();
  planes.delete(plane);
  // The Lua never fails silently: its errors are counted against the run.
  return luaFailures(await readFile(plane.files.errorLog, 'utf8').catch(() => ''));
}

const masterOf = (plane: NginxDataPlane): number => {
  const pid = plane.lastOutcome().pid;
  if (pid === null) throw new Error('nginx has no master running');
  return pid;
};

/** Every route of `table` requested once, 8 at a time, each with its namespace's key; the statuses counted. */
async function requestEveryRoute(
  routingPort: number,
  table: RouteTable,
  header: string,
): Promise<Record<string, number>> {
  const statuses: Record<string, number> = {};
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < table.routes.length) {
      const route = table.routes[next++] as RouteTable['routes'][number];
      const answer = await ask(
        routingPort,
        route.host,
        route.path,
        route.apiKey === null ? undefined : { header, value: route.apiKey },
      );
      statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return statuses;
}

interface ProcessCheck {
  before: ProcessIdentity[];
  /** Processes that appeared or went at any check in between, by pid. */
  appeared: Set<number>;
  gone: Set<number>;
  reloadsBefore: number;
}

async function processCheck(plane: NginxDataPlane): Promise<ProcessCheck> {
  return {
    before: await nginxProcesses(masterOf(plane)),
    appeared: new Set(),
    gone: new Set(),
    reloadsBefore: plane.lastOutcome().reloads,
  };
}

async function recheck(plane: NginxDataPlane, check: ProcessCheck): Promise<void> {
  const now = await nginxProcesses(masterOf(plane));
  for (const p of newProcesses(check.before, now)) check.appeared.add(p.pid);
  for (const p of goneProcesses(check.before, now)) check.gone.add(p.pid);
}

interface ProcessReport {
  reloads: number;
  /** Master first, then workers. */
  pids: number[];
  newProcesses: number[];
  goneProcesses: number[];
}

const processReport = (plane: NginxDataPlane, check: ProcessCheck): ProcessReport => ({
  reloads: plane.lastOutcome().reloads - check.reloadsBefore,
  pids: check.before.map((p) => p.pid),
  newProcesses: [...check.appeared],
  goneProcesses: [...check.gone],
});

// ---------------------------------------------------------------------------------------
// The phases

interface Applied {
  kind: Kind;
  /** Around the manager's apply: from the table built to every worker serving it. */
  wallMs: number;
  /** The manager's own figures for that apply (lastApplyTimings). */
  totalMs: number;
  sendMs: number;
  buildMs: number;
  problem: string | null;
}

interface ChangeTiming {
  table: RouteTable;
  wallMs: number;
  totalMs: number;
  sendMs: number;
  buildMs: number;
  versionChanged: boolean;
}

async function applyChange(plane: NginxDataPlane, run: Run, next: Snapshot): Promise<ChangeTiming> {
  const versionBefore = plane.lastOutcome().tableVersion;
  const building = performance.now();
  const table = run.builder.update(next.pods, next.secrets);
  const built = performance.now();
  await plane.apply(table);
  const wallMs = performance.now() - built;
  run.snapshot = next;
  const outcome = plane.lastOutcome();
  return {
    table,
    wallMs,
    totalMs: outcome.lastApplyTimings?.totalMs ?? NaN,
    sendMs: outcome.lastApplyTimings?.sendMs ?? NaN,
    buildMs: built - building,
    versionChanged: outcome.tableVersion !== versionBefore,
  };
}

async function applySeries(
  plane: NginxDataPlane,
  run: Run,
  pods: Pods,
): Promise<{ applied: Applied[]; processes: ProcessReport }> {
  const check = await processCheck(plane);
  const applied: Applied[] = [];
  for (let r = 0; r < REPETITIONS; r++) {
    for (const change of changesOf(r, run.snapshot, run.config, pods.port)) {
      const timing = await applyChange(plane, run, change.next);
      const problem = timing.versionChanged
        ? await change.check(run.config.port, timing.table)
        : 'the manager reports the same table version as before';
      const { wallMs, totalMs, sendMs, buildMs } = timing;
      applied.push({ kind: change.kind, wallMs, totalMs, sendMs, buildMs, problem });
      if (problem !== null) log(`${change.kind}, repetition ${r + 1}: ${problem}`);
      await recheck(plane, check);
    }
    for (const p of pods.cluster) p.received.length = 0;
  }
  return { applied, processes: processReport(plane, check) };
}

interface WebSocketRun {
  changes: number;
  echoes: number;
  /** The change after which the WebSocket closed, or null when it stayed open. */
  closedAfter: number | null;
  /** Pods that answered HTTP requests to the WebSocket's host while both its pods were there. */
  httpPods: string[];
  applyMs: number[];
  processes: ProcessReport;
}

function echo(ws: WebSocket, text: string): Promise<string | null> {
  return new Promise((resolve) => {
    const done = (value: string | null): void => {
      clearTimeout(timer);
      ws.off('message', onMessage);
      resolve(value);
    };
    const onMessage = (data: WebSocket.RawData): void => done((data as Buffer).toString());
    const timer = setTimeout(() => done(null), ANSWER_MS);
    ws.on('message', onMessage);
    ws.send(text, (err) => {
      if (err) done(null);
    });
  });
}

async function webSocketAcrossChanges(plane: NginxDataPlane, run: Run, pods: Pods): Promise<WebSocketRun> {
  const wsPod = (p: TestPod): Pod =>
    pod(p.name, { namespace: WS_NAMESPACE, ip: p.ip, hosts: WS_HOST, paths: `${pods.port}:/`, ports: [pods.port] });
  await applyChange(plane, run, withPod(run.snapshot, wsPod(pods.wsA)));
  const check = await processCheck(plane);
  const ws = new WebSocket(`ws://127.0.0.1:${run.config.port}/`, { headers: { Host: WS_HOST } });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let closedAfter: number | null = null;
  let changes = 0;
  ws.on('close', () => (closedAfter ??= changes));
  ws.on('error', () => undefined);
  const first = await echo(ws, 'hello');
  if (first !== `${pods.wsA.name}:hello`)
    throw new Error(`the WebSocket's first echo came back as ${JSON.stringify(first)}, not from ${pods.wsA.name}`);
  let echoes = 0;
  const httpPods = new Set<string>();
  const applyMs: number[] = [];
  // A cluster pod far from those the apply series changed gains and loses a second pod.
  const other = replicaOf(CLUSTER_PODS - 1, pods.port);
  for (let i = 0; i < WS_CHANGES; i++) {
    const s = run.snapshot;
    const next = [
      () => withPod(s, wsPod(pods.wsB)),
      () => withPod(s, other),
      () => withoutPod(s, wsPod(pods.wsB)),
      () => withoutPod(s, other),
    ][i % 4] as () => Snapshot;
    applyMs.push((await applyChange(plane, run, next())).wallMs);
    changes = i + 1;
    if (i % 4 === 0) for (let k = 0; k < 4; k++) httpPods.add((await ask(run.config.port, WS_HOST)).pod ?? 'none');
    if ((await echo(ws, `change ${i + 1}`)) === `${pods.wsA.name}:change ${i + 1}`) echoes++;
    await recheck(plane, check);
  }
  ws.close();
  return {
    changes,
    echoes,
    closedAfter,
    httpPods: [...httpPods].sort(),
    applyMs,
    processes: processReport(plane, check),
  };
}

interface WorkerRun {
  workers: number;
  starts: { ms: number; loadMs: number; sendMs: number }[];
  documentedStartMs: number;
  memory: {
    dynamic: Memory;
    documented: Memory;
    dynamicStatuses: Record<string, number>;
    documentedStatuses: Record<string, number>;
  };
  applied: Applied[];
  applyProcesses: ProcessReport;
  webSocket: WebSocketRun;
  luaFailures: string[];
  nginxErrors: number;
}

async function forWorkers(workers: number, pods: Pods, work: string): Promise<WorkerRun> {
  const routingPort = await pickFreeLoopbackPort();
  const config = configFor('dynamic', workers, routingPort);
  const builder = new IncrementalRouteTable(config);
  const snapshot = baseSnapshot(pods.port);
  const table = builder.update(snapshot.pods, snapshot.secrets);
  if (table.routes.length !== CLUSTER_PODS * 4)
    throw new Error(`the cluster gave ${table.routes.length} routes, not ${CLUSTER_PODS * 4}`);
  const run: Run = { workers, config, builder, snapshot };
  const lua: string[] = [];

  // 1. Starts: a fresh nginx each time; the last one stays for the rest.
  const starts: WorkerRun['starts'] = [];
  let plane: NginxDataPlane | null = null;
  for (let i = 0; i < STARTS; i++) {
    if (plane !== null) lua.push(...(await closeNginx(plane)));
    const started = await startNginx(config, join(work, `dynamic-${workers}-${i}`), table);
    plane = started.plane;
    const timings = plane.lastOutcome().lastApplyTimings;
    starts.push({ ms: started.ms, loadMs: timings?.loadMs ?? NaN, sendMs: timings?.sendMs ?? NaN });
    log(`${workers} worker(s): start ${i + 1}/${STARTS}: ${fmt(started.ms)} ms`);
  }
  if (plane === null) throw new Error('--starts must be at least 1');

  // 2. Memory after every route was requested once.
  const dynamicStatuses = await requestEveryRoute(routingPort, table, config.apiKeyHeader);
  const dynamicMemory = await memoryOf(await nginxProcesses(masterOf(plane)));
  log(`${workers} worker(s): dynamic nginx, every route requested once: ${JSON.stringify(dynamicStatuses)}`);
  log(`${workers} worker(s): dynamic nginx, RSS ${fmt(dynamicMemory.rssMiB)} MiB`);

  // 3. Changes, 4. a WebSocket across changes.
  const series = await applySeries(plane, run, pods);
  const webSocket = await webSocketAcrossChanges(plane, run, pods);
  const errors = plane.lastOutcome().errors;
  lua.push(...(await closeNginx(plane)));

  // Documented nginx on the same first table, for its memory (and its start, for comparison).
  const documentedConfig = configFor('documented', workers, routingPort);
  const documented = await startNginx(
    documentedConfig,
    join(work, `documented-${workers}`),
    new IncrementalRouteTable(documentedConfig).update(snapshot.pods, snapshot.secrets),
  );
  const documentedStatuses = await requestEveryRoute(routingPort, table, config.apiKeyHeader);
  const documentedMemory = await memoryOf(await nginxProcesses(masterOf(documented.plane)));
  log(`${workers} worker(s): documented nginx started in ${fmt(documented.ms)} ms`);
  log(`${workers} worker(s): documented nginx, every route requested once: ${JSON.stringify(documentedStatuses)}`);
  log(`${workers} worker(s): documented nginx, RSS ${fmt(documentedMemory.rssMiB)} MiB`);
  await closeNginx(documented.plane);
  for (const p of [...pods.cluster, pods.wsA, pods.wsB]) p.received.length = 0;

  return {
    workers,
    starts,
    documentedStartMs: documented.ms,
    memory: { dynamic: dynamicMemory, documented: documentedMemory, dynamicStatuses, documentedStatuses },
    applied: series.applied,
    applyProcesses: series.processes,
    webSocket,
    luaFailures: lua,
    nginxErrors: errors.crit + errors.alert + errors.emerg,
  };
}

// ---------------------------------------------------------------------------------------
// Report

interface Target {
  target: string;
  goal: string;
  measured: string;
  met: boolean;
}

function kindFigures(
  run: WorkerRun,
  kind: Kind,
): {
  count: number;
  median: number;
  p99: number;
  totalMedian: number;
  sendMedian: number;
  buildMedian: number;
  problems: number;
} {
  const rows = run.applied.filter((a) => a.kind === kind);
  return {
    count: rows.length,
    median: median(rows.map((a) => a.wallMs)),
    p99: percentile(
      rows.map((a) => a.wallMs),
      99,
    ),
    totalMedian: median(rows.map((a) => a.totalMs)),
    sendMedian: median(rows.map((a) => a.sendMs)),
    buildMedian: median(rows.map((a) => a.buildMs)),
    problems: rows.filter((a) => a.problem !== null).length,
  };
}

function describeProcesses(p: ProcessReport): string {
  const gone = p.goneProcesses.length > 0 ? `, ${p.goneProcesses.length} gone` : '';
  const pids = `master ${p.pids[0]}, workers ${p.pids.slice(1).join(', ')}`;
  return `${p.reloads} reload(s), ${p.newProcesses.length} new process(es)${gone} (${pids})`;
}

const steady = (p: ProcessReport): boolean =>
  p.reloads === 0 && p.newProcesses.length === 0 && p.goneProcesses.length === 0;

function targetsOf(run: WorkerRun): Target[] {
  const w = `${run.workers} worker${run.workers === 1 ? '' : 's'}`;
  const starts = run.starts.map((s) => s.ms);
  const { dynamic, documented } = run.memory;
  const ws = run.webSocket;
  const wsState = ws.closedAfter === null ? 'open' : `closed after change ${ws.closedAfter}`;
  return [
    ...KINDS.map((kind) => {
      const f = kindFigures(run, kind);
      const problems = f.problems > 0 ? `; ${f.problems} not served as expected` : '';
      return {
        target:
          `dynamic nginx, 10,000 routes, ${w}: ${kind}, ` +
          `table built → every worker serves it (${f.count} times), median / p99`,
        goal: '< 50 ms / < 200 ms, every change served',
        measured: `${fmt(f.median)} / ${fmt(f.p99)} ms${problems}`,
        met: f.median < 50 && f.p99 < 200 && f.problems === 0,
      };
    }),
    {
      target:
        `dynamic nginx, 10,000 routes, ${w}: ` +
        `nginx reloads and new nginx processes during ${run.applied.length} changes`,
      goal: '0 reloads, 0 new processes',
      measured: describeProcesses(run.applyProcesses),
      met: steady(run.applyProcesses),
    },
    {
      target:
        `dynamic nginx, ${w}: first table of 10,000 routes built → served by a freshly started nginx ` +
        `(${starts.length} starts), median / slowest`,
      goal: '< 1 s',
      measured: `${fmt(median(starts), 0)} / ${fmt(Math.max(...starts), 0)} ms`,
      met: Math.max(...starts) < 1000,
    },
    {
      target: `nginx RSS (master + workers), 10,000 routes, ${w}, every route requested once: dynamic ≤ documented`,
      goal: 'dynamic ≤ documented',
      measured: `dynamic ${fmt(dynamic.rssMiB)} MiB, documented ${fmt(documented.rssMiB)} MiB`,
      met: dynamic.rssMiB <= documented.rssMiB,
    },
    {
      target:
        `a WebSocket through dynamic nginx (${w}) across ${ws.changes} route changes, ` +
        "its own route's pods included",
      goal: 'open, an echo after every change, nginx processes unchanged',
      measured: `${wsState}, ${ws.echoes} of ${ws.changes} echoes, ${describeProcesses(ws.processes)}`,
      met: ws.closedAfter === null && ws.echoes === ws.changes && steady(ws.processes),
    },
  ];
}

/** A markdown table: its header row, the separator, then the rows. */
function table(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string[] {
  const line = (cells: readonly (string | number)[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)];
}

function introOf(): string[] {
  const thousands = (n: number): string => n.toLocaleString('en-US');
  return [
    [
      "The router's nginx manager in dynamic mode",
      '(as `k8s-router run --backend nginx --nginx-mode dynamic` builds it),',
      `in-process, on the cluster of \`lib/cluster.ts\`: ${thousands(CLUSTER_PODS)} pods, 2 hosts and 2 paths each`,
      `(${thousands(CLUSTER_PODS * 4)} routes), 100 pods per namespace, every other namespace locked by an API key;`,
      `the pods answer on ${POD_IPS.length} loopback addresses.`,
      `${REPETITIONS} repetitions of each change${QUICK ? ' (a smoke run)' : ''};`,
      'p99 is the nearest rank, so with fewer than 100 samples it is the slowest.',
    ].join(' '),
    '',
  ];
}

function targetsSection(targets: Target[]): string[] {
  return [
    '## Targets',
    '',
    ...table(
      ['target', 'goal', 'measured', 'met'],
      targets.map((t) => [t.target, t.goal, t.measured, t.met ? 'yes' : '**no**']),
    ),
    '',
  ];
}

function changeSection(runs: WorkerRun[]): string[] {
  return [
    '## A change, from the table built to every worker serving it',
    '',
    [
      "Timed around the manager's `apply()`, which resolves once every current worker reports the new table's version",
      "over the control socket; the manager's own `lastApplyTimings.totalMs` and `sendMs` (the table serialized, sent",
      'and confirmed) beside it. The table build (`IncrementalRouteTable`, as the router runs it) is before and not',
      'counted.',
    ].join(' '),
    '',
    ...table(
      [
        'workers',
        'change',
        'times',
        'median ms',
        'p99 ms',
        'manager total, median ms',
        'of which send, median ms',
        'table build, median ms (not counted)',
        'not served as expected',
      ],
      runs.flatMap((run) =>
        KINDS.map((kind) => {
          const f = kindFigures(run, kind);
          const figures = [f.median, f.p99, f.totalMedian, f.sendMedian, f.buildMedian].map((n) => fmt(n));
          return [run.workers, kind, f.count, ...figures, f.problems];
        }),
      ),
    ),
    '',
    ...table(
      ['workers', 'during the changes'],
      runs.map((run) => [run.workers, describeProcesses(run.applyProcesses)]),
    ),
    '',
  ];
}

function startSection(runs: WorkerRun[]): string[] {
  return [
    '## Start with 10,000 routes',
    '',
    [
      'From the first table (built already) to a freshly started nginx serving it on every worker:',
      "the manager's first apply, which starts nginx (loading the Lua module) and then sends the table.",
      'Documented nginx on the same table, for comparison (`nginx -t`, then nginx parsing a config with a server',
      'block per host).',
    ].join(' '),
    '',
    ...table(
      [
        'workers',
        'dynamic: each start, ms',
        'of which nginx started (load), median ms',
        'of which table sent, median ms',
        'documented, ms',
      ],
      runs.map((run) => [
        run.workers,
        run.starts.map((s) => fmt(s.ms, 0)).join(', '),
        fmt(median(run.starts.map((s) => s.loadMs)), 0),
        fmt(median(run.starts.map((s) => s.sendMs)), 0),
        fmt(run.documentedStartMs, 0),
      ]),
    ),
    '',
  ];
}

function memorySection(runs: WorkerRun[]): string[] {
  return [
    '## nginx memory at 10,000 routes',
    '',
    [
      "Every route of the table requested once (with its namespace's key where it has one), then the master's and",
      "workers' memory from /proc: RSS (VmRSS, pages shared between processes counted in each) and PSS (Pss of",
      'smaps_rollup, shared pages split between the processes).',
    ].join(' '),
    '',
    ...table(
      [
        'workers',
        'dynamic RSS MiB',
        'documented RSS MiB',
        'dynamic PSS MiB',
        'documented PSS MiB',
        'answers, dynamic',
        'answers, documented',
      ],
      runs.map(({ workers, memory: m }) => [
        workers,
        ...[m.dynamic.rssMiB, m.documented.rssMiB, m.dynamic.pssMiB, m.documented.pssMiB].map((n) => fmt(n)),
        JSON.stringify(m.dynamicStatuses),
        JSON.stringify(m.documentedStatuses),
      ]),
    ),
    '',
  ];
}

function webSocketSection(runs: WorkerRun[]): string[] {
  return [
    '## A WebSocket across route changes',
    '',
    [
      `A WebSocket to \`${WS_HOST}\`, whose route has one pod (ws-a), then ${WS_CHANGES} changes in turn: ws-b added`,
      'to its route, a second pod added to a cluster route, ws-b removed, that pod removed. After each, a message on',
      `the WebSocket must come back from ws-a. HTTP requests to \`${WS_HOST}\` while ws-b was on the route show the`,
      'route really changed.',
    ].join(' '),
    '',
    ...table(
      [
        'workers',
        'changes',
        'echoes',
        'closed',
        'pods answering HTTP on its host',
        'apply median / slowest ms',
        'nginx during the changes',
      ],
      runs.map(({ workers, webSocket: ws }) => [
        workers,
        ws.changes,
        ws.echoes,
        ws.closedAfter === null ? 'no' : `after change ${ws.closedAfter}`,
        ws.httpPods.join(', '),
        `${fmt(median(ws.applyMs))} / ${fmt(Math.max(...ws.applyMs))}`,
        describeProcesses(ws.processes),
      ]),
    ),
    '',
  ];
}

function failuresLine(runs: WorkerRun[]): string[] {
  const sum = (of: (run: WorkerRun) => number): number => runs.reduce((n, run) => n + of(run), 0);
  return [
    [
      `Lua failures in nginx's error logs: ${sum((run) => run.luaFailures.length)};`,
      `nginx errors at crit and worse (dynamic): ${sum((run) => run.nginxErrors)};`,
      `warnings the manager logged: ${warnings.length}.`,
    ].join(' '),
  ];
}

function markdownOf(runs: WorkerRun[], targets: Target[]): string {
  return [
    ...introOf(),
    ...targetsSection(targets),
    ...changeSection(runs),
    ...startSection(runs),
    ...memorySection(runs),
    ...webSocketSection(runs),
    ...failuresLine(runs),
  ].join('\n');
}

async function main(): Promise<void> {
  const work = await workDir('k8s-router-bench-dynamic-');
  const pods = await startPods();
  const runs: WorkerRun[] = [];
  try {
    for (const workers of WORKER_COUNTS) runs.push(await forWorkers(workers, pods, work));
  } finally {
    await Promise.all([...planes].map((p) => p.close()));
    await pods.close();
    await rm(work, { recursive: true, force: true });
  }
  const targets = runs.flatMap(targetsOf);
  for (const run of runs) for (const line of run.luaFailures) log(`Lua failure: ${line}`);
  const markdown = markdownOf(runs, targets);
  const bars: Bar[] = runs.flatMap((run) =>
    KINDS.flatMap((kind) => {
      const f = kindFigures(run, kind);
      return [
        { label: `${kind}, ${run.workers} worker(s), median`, value: f.median },
        { label: `${kind}, ${run.workers} worker(s), p99`, value: f.p99 },
      ];
    }),
  );
  const written = writeReport({
    name: 'dynamic-apply',
    title: 'Dynamic nginx at 10,000 routes: apply, start, memory, a WebSocket across changes',
    command: invocation('bench/dynamic-apply.ts'),
    results: {
      quick: QUICK,
      routes: CLUSTER_PODS * 4,
      repetitions: REPETITIONS,
      runs: runs.map((run) => ({
        ...run,
        figures: Object.fromEntries(KINDS.map((kind) => [kind, kindFigures(run, kind)])),
      })),
      warnings,
      // The rows bench/run.ts puts in the summary.
      targets,
    },
    markdown,
    charts: [{ title: 'Dynamic nginx, 10,000 routes: a change until every worker serves it (ms)', unit: 'ms', bars }],
  });
  process.stdout.write(`${markdown}\n\n${written.join('\n')}\n`);
  // Lua that failed means the figures are of a broken data plane.
  if (runs.some((run) => run.luaFailures.length > 0)) process.exitCode = 1;
}

process.on('SIGINT', () => {
  void Promise.all([...planes].map((p) => p.close())).then(() => process.exit(130));
});

await main();
