// Memory and time to the first table of `k8s-router run` on a big cluster.
//
//   node --import tsx bench/big-cluster.ts [--quick] [--sizes 0,10000,50000] [--name big-cluster] [--router-root DIR]
//
// For each size it fills the fake Kubernetes API server (test/support) with that many
// routable pods shaped as a real cluster serves them (about 5 KB of JSON each: managedFields,
// volumes, probes, container statuses; 10 replicas per host, 50 namespaces, one API-key
// Secret per namespace), then:
//
// 1. The fake server alone: how long it takes to hand out every pod, in pages of 500 and in
//    one response, to a plain HTTPS client in this process. It is the other side of every
//    figure below, so it is measured on its own.
// 2. The router, built as it ships (tsc into tmp/, run with node, proxy backend): from its
//    start to the first table served (the "route table served" log line), with the time of
//    its first request to the API server and of its last list page; its resident memory
//    (VmRSS) sampled every 50 ms, its peak (VmHWM) and what it holds 3 s after the first table.
//
// --quick runs 0 and 5,000 pods. --router-root builds the router of another checkout (an
// older commit, say, with node_modules reachable from it) against the same fake server.
// Results go to bench/results/<name>.{json,md,svg}.

import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pickFreeLoopbackPort } from '../nginx/status.js';
import { delay } from '../test/support/eventually.js';
import { FakeApiServer } from '../test/support/fake-api-server.js';
import { apiKeySecret } from '../test/support/objects.js';
import { clusterPod } from '../test/support/realistic-pods.js';
import { testCertificates } from '../test/support/tls.js';
import { tableRow } from './lib/markdown.js';
import { invocation, writeReport } from './lib/report.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const NAMESPACES = 50;
const GIVE_UP_MS = 180_000;

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    sizes: { type: 'string' },
    name: { type: 'string', default: 'big-cluster' },
    'router-root': { type: 'string' },
  },
});
const ROOT = args['router-root'] ?? REPO;
const BUILD = join(ROOT, 'tmp', 'big-cluster-build');
const SIZES = (args.sizes ?? (args.quick ? '0,5000' : '0,10000,50000')).split(',').map(Number);

interface ServerOnly {
  pagedMs: number;
  pages: number;
  singleMs: number;
  megabytes: number;
}

interface RouterRun {
  pods: number;
  /** From spawn to its first request to the API server (Node start-up, config, kubeconfig). */
  firstRequestMs: number | null;
  /** From spawn to the arrival of its last list request of the initial load. */
  lastListRequestMs: number | null;
  listRequests: number;
  /** From spawn to the "route table served" log line. */
  firstTableMs: number;
  /** CPU time (user + system) the router used until then: steadier than wall time on a busy machine. */
  cpuAtFirstTableMs: number;
  routes: number | null;
  rssAtFirstTableMB: number;
  rssSettledMB: number;
  peakRssMB: number;
}

interface SizeResult {
  pods: number;
  seedMs: number;
  server: ServerOnly;
  router: RouterRun;
}

/** Fills the fake API server as a cluster of `pods` pods; history compacted as after a while. */
function seed(api: FakeApiServer, pods: number): void {
  for (let i = 0; i < pods; i++) api.upsert(clusterPod(i, { namespaces: NAMESPACES }));
  for (let n = 0; n < NAMESPACES; n++) api.upsert(apiKeySecret(`team-${n}`, `key-${n}`));
  api.compact();
}

/** GET on the fake server with the token, reading the whole body; returns the body size. */
function get(api: FakeApiServer, path: string): Promise<{ bytes: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${api.url}${path}`,
      { ca: testCertificates().caCert, headers: { authorization: `Bearer ${api.token}` } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          if (res.statusCode !== 200) reject(new Error(`${path}: ${res.statusCode} ${body.toString().slice(0, 200)}`));
          else resolve({ bytes: body.length, body: body.length < 10_000_000 ? body.toString() : '' });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function measureServerOnly(api: FakeApiServer): Promise<ServerOnly> {
  const selector = `labelSelector=${encodeURIComponent('routable=true')}`;
  let started = performance.now();
  let pages = 0;
  let token: string | undefined;
  do {
    const { body } = await get(
      api,
      `/api/v1/pods?${selector}&limit=500${token ? `&continue=${encodeURIComponent(token)}` : ''}`,
    );
    token = (JSON.parse(body) as { metadata?: { continue?: string } }).metadata?.continue;
    pages += 1;
  } while (token);
  const pagedMs = performance.now() - started;
  started = performance.now();
  const { bytes } = await get(api, `/api/v1/pods?${selector}`);
  return { pagedMs, pages, singleMs: performance.now() - started, megabytes: bytes / 2 ** 20 };
}

/** User + system CPU time of a process so far, from /proc (clock ticks of 10 ms). */
function cpuMsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
    .replace(/^.*\) /, '')
    .split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function memoryOf(pid: number): { rss: number; hwm: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
  } catch {
    return null;
  }
}

async function measureRouter(api: FakeApiServer, pods: number): Promise<RouterRun> {
  const port = await pickFreeLoopbackPort();
  const requestsBefore = api.requests.length;
  const spawnedAt = Date.now();
  const child = spawn(process.execPath, [join(BUILD, 'src', 'cli.js'), 'run', '--backend', 'proxy'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/root',
      PORT: String(port),
      LISTEN_ADDRESS: '127.0.0.1',
      KUBECONFIG: api.kubeConfigFile(),
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const pid = child.pid as number;
  let firstTable: { at: number; routes: number | null } | null = null;
  let exited = false;
  child.once('exit', () => (exited = true));
  let pending = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      try {
        const parsed = JSON.parse(line) as { msg?: string; routes?: number };
        if (parsed.msg === 'route table served' && firstTable === null)
          firstTable = { at: Date.now(), routes: parsed.routes ?? null };
      } catch {
        process.stderr.write(`router: ${line}\n`);
      }
    }
  });
  let sampledPeak = 0;
  const sampler = setInterval(() => {
    const m = memoryOf(pid);
    if (m !== null) sampledPeak = Math.max(sampledPeak, m.rss);
  }, 50);
  try {
    while (firstTable === null) {
      if (exited) throw new Error('the router exited before serving a table');
      if (Date.now() - spawnedAt > GIVE_UP_MS) throw new Error(`no table after ${GIVE_UP_MS} ms`);
      await delay(20);
    }
    const atFirstTable = memoryOf(pid);
    const cpuAtFirstTableMs = cpuMsOf(pid);
    await delay(3_000);
    const settled = memoryOf(pid);
    const table = firstTable as { at: number; routes: number | null };
    const mine = api.requests.slice(requestsBefore);
    const lists = mine.filter((r) => !r.watch && r.at <= table.at);
    return {
      pods,
      firstRequestMs: mine[0] ? mine[0].at - spawnedAt : null,
      lastListRequestMs: lists.length > 0 ? (lists.at(-1)?.at ?? spawnedAt) - spawnedAt : null,
      listRequests: lists.length,
      firstTableMs: table.at - spawnedAt,
      cpuAtFirstTableMs,
      routes: table.routes,
      rssAtFirstTableMB: atFirstTable?.rss ?? NaN,
      rssSettledMB: settled?.rss ?? NaN,
      peakRssMB: Math.max(settled?.hwm ?? 0, sampledPeak),
    };
  } finally {
    clearInterval(sampler);
    if (!exited) {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  }
}

async function measureSize(pods: number): Promise<SizeResult> {
  const api = await FakeApiServer.start({ bookmarkIntervalMs: 5_000 });
  try {
    const started = performance.now();
    seed(api, pods);
    const seedMs = performance.now() - started;
    const server = await measureServerOnly(api);
    const router = await measureRouter(api, pods);
    return { pods, seedMs, server, router };
  } finally {
    await api.close();
  }
}

/** A whole number with thousands separators, or a dash for one not measured. */
function f0(n: number | null): string {
  return n === null || Number.isNaN(n) ? '–' : Math.round(n).toLocaleString('en-US');
}
const f1 = (n: number): string => n.toFixed(1);

/** A right-aligned separator line for a table of `columns` columns. */
const rightAligned = (columns: number): string => `|${Array.from({ length: columns }, () => '---:').join('|')}|`;

function routerRow({ router: r }: SizeResult): string {
  return tableRow([
    f0(r.pods),
    `${f0(r.firstRequestMs)} ms`,
    `${f0(r.lastListRequestMs)} ms`,
    `**${f0(r.firstTableMs)} ms**`,
    `${f0(r.cpuAtFirstTableMs)} ms`,
    r.listRequests,
    f0(r.routes),
    `${f0(r.rssAtFirstTableMB)} MB`,
    `${f0(r.rssSettledMB)} MB`,
    `**${f0(r.peakRssMB)} MB**`,
  ]);
}

function serverRow({ pods, seedMs, server: s }: SizeResult): string {
  return tableRow([
    f0(pods),
    `${f0(seedMs)} ms`,
    `${f0(s.pagedMs)} ms`,
    s.pages,
    `${f0(s.singleMs)} ms`,
    `${f1(s.megabytes)} MiB`,
  ]);
}

function markdown(results: SizeResult[]): string {
  const routerColumns = [
    'pods',
    'first request',
    'last list request',
    'first table served',
    'router CPU until then',
    'list requests',
    'routes',
    'RSS at first table',
    'RSS 3 s later',
    'peak RSS (VmHWM)',
  ];
  const serverColumns = ['pods', 'seeding', 'every pod in pages of 500', 'pages', 'in one response', 'response size'];
  return [
    `The router (built with tsc${args['router-root'] ? ` from ${ROOT}` : ''}, run with node, proxy backend) ` +
      'starting against the fake API server with N routable pods of about 5 KB of JSON each ' +
      '(10 replicas per host, 50 namespaces).',
    '',
    tableRow(routerColumns),
    rightAligned(routerColumns.length),
    ...results.map(routerRow),
    '',
    'Times are from the router process start. The fake API server alone (same process as this script, ' +
      "a plain HTTPS client reading and parsing every pod; this first list also fills the fake's cache of " +
      "serialized objects, which the router's list then uses):",
    '',
    tableRow(serverColumns),
    rightAligned(serverColumns.length),
    ...results.map(serverRow),
  ].join('\n');
}

execFileSync(
  process.execPath,
  [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', BUILD],
  { stdio: 'inherit' },
);
const results: SizeResult[] = [];
try {
  for (const pods of SIZES) {
    const result = await measureSize(pods);
    console.log(JSON.stringify(result));
    results.push(result);
  }
} finally {
  rmSync(BUILD, { recursive: true, force: true });
}
const written = writeReport({
  name: args.name,
  title: 'Big clusters: memory and time to the first table',
  command: invocation('bench/big-cluster.ts'),
  results,
  markdown: markdown(results),
  charts: [
    {
      title: 'Peak resident memory of the router (VmHWM)',
      unit: 'MB',
      bars: results.map((r) => ({ label: `${f0(r.pods)} pods`, value: r.router.peakRssMB })),
    },
    {
      title: 'Time from start to the first table served',
      unit: 'ms',
      bars: results.map((r) => ({ label: `${f0(r.pods)} pods`, value: r.router.firstTableMs })),
    },
  ],
});
console.log(markdown(results));
console.log(written.join('\n'));
