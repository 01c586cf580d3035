// Data-plane throughput and latency: our two backends (nginx in both of its modes,
// documented and dynamic, and our proxy) against the limit (straight to a pod) and against
// bare proxies built on the libraries a Node router could use.
//
//   node --import tsx bench/data-plane.ts [--quick] [--rounds N] [--seconds S] [--only a,b,...]
//
// Three pods are served by a separate nginx (`return 200`, so the pods cost little).
// Each contestant is a process of its own, and wrk (`-t1 -c32 --latency`) loads it
// for S seconds, contestant after contestant, the order rotated each round. Servers are
// pinned to cpu 0 and wrk and the pods to cpu 1 with taskset: on two cores, a load
// generator left free would take cycles from the server it measures, and the numbers
// would say more about the scheduler than about the server. Ratios are taken per round,
// against documented nginx and against direct in the same round, and summarized by their
// median. Then:
// - latency at the same load: documented nginx, dynamic nginx and our proxy, each on the
//   documented wire and with upstream keep-alive, paced by a wrk script to one rate they
//   all sustain, p50 and p99;
// - head to head: two servers of one kind at once on the server core, each with its own
//   wrk, the ratio of their req/s (robust to a busy machine): our proxy on http-proxy
//   1.18.1 against the same on http-proxy-3 (the library comparison), ours against the
//   bare servers, each backend over 10,000 routes against 10;
// - route count: the same traffic through 10 and through 10,000 routes (100 hosts x 100
//   paths), documented nginx, dynamic nginx and our proxy with upstream keep-alive,
//   interleaved the same way;
// - one unpinned round with nginx's `worker_processes auto` (and nothing pinned).
// The bare contestants include node:http's and undici's clients with no library at all:
// the floor of the proxies built on each.
// --quick: one round of 1 s each after 1 s of warm-up, without head to head and the
// unpinned round, for a smoke run.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { defaultConfig, type NginxMode } from '../src/core/config.js';
import type { Pod } from '../src/core/kube-objects.js';
import { buildRouteTable, type RouteTable } from '../src/core/route-table.js';
import { pickFreeLoopbackPort } from '../nginx/status.js';
import { manifestText } from '../test/support/manifests.js';
import { pod } from '../test/support/objects.js';
import { KEEPALIVE } from './contestants/routes.js';
import { metCell, tableHeader, tableRow } from './lib/markdown.js';
import { invocation, writeReport, type Chart } from './lib/report.js';
import { median } from './lib/stats.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NGINX =
  spawnSync('sh', ['-c', 'command -v nginx || ls /usr/sbin/nginx'], { encoding: 'utf8' })
    .stdout.trim()
    .split('\n')[0] || 'nginx';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    only: { type: 'string' },
  },
});
const QUICK = args.quick === true;
const ROUNDS = Number(args.rounds ?? (QUICK ? 1 : 5));
const SECONDS = Number(args.seconds ?? (QUICK ? 1 : 10));
/**
 * Before its first measured run, each server is loaded this long: the JIT. A smoke run warms
 * up too, or the servers it measures after others (10,000 routes after 10) start cold.
 */
const WARMUP_SECONDS = QUICK ? 1 : 3;
const CONNECTIONS = 32;
const SERVER_CPU = '0';
const CLIENT_CPU = '1';

const POD_IPS = ['127.0.0.51', '127.0.0.52', '127.0.0.53'];
const HOST = 'h0.bench.test';
/** Matches only "/" on its host: in a host with 100 paths, the longest-prefix search goes through all of them. */
const REQUEST_PATH = '/zz/index.html';

// ---------------------------------------------------------------------------------------
// Processes

const children = new Set<ChildProcess>();

function start(command: string[], pinned: boolean, env: Record<string, string> = {}): ChildProcess {
  const argv = pinned ? ['taskset', '-c', SERVER_CPU, ...command] : command;
  const child = spawn(argv[0] as string, argv.slice(1), {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-4000);
  });
  child.once('exit', (code, signal) => {
    children.delete(child);
    if (!stopping.has(child)) process.stderr.write(`${argv.join(' ')} exited (${code ?? signal}):\n${err}\n`);
  });
  children.add(child);
  return child;
}

const stopping = new Set<ChildProcess>();

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  stopping.add(child);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

function statusOf(port: number, host: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: REQUEST_PATH, headers: { Host: host }, agent: false },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', () => resolve(0));
    req.setTimeout(2_000, () => req.destroy());
  });
}

async function waitFor200(port: number, what: string, child?: ChildProcess, timeoutMs = 90_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child !== undefined && child.exitCode !== null) throw new Error(`${what} exited before serving`);
    if ((await statusOf(port, HOST)) === 200) return;
    await delay(100);
  }
  throw new Error(`${what} did not answer 200 on port ${port} within ${timeoutMs} ms`);
}

// ---------------------------------------------------------------------------------------
// The pods and the route tables

const work = mkdtempSync(join(tmpdir(), 'k8s-router-bench-data-plane-'));
// nginx's workers may run as another user: they must reach the prefixes below.
chmodSync(work, 0o755);

async function startPods(): Promise<{ port: number; child: ChildProcess }> {
  const port = await pickFreeLoopbackPort();
  const prefix = join(work, 'pods');
  rmSync(prefix, { recursive: true, force: true });
  spawnSync('mkdir', ['-p', join(prefix, 'logs')]);
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    [
      'daemon off;',
      'worker_processes 1;',
      `pid ${prefix}/nginx.pid;`,
      `error_log ${prefix}/error.log;`,
      'events { worker_connections 4096; }',
      'http {',
      'access_log off;',
      // Node, undici and nginx keep an idle pod connection open indefinitely; so does the pod.
      'keepalive_requests 1000000;',
      ...POD_IPS.map((ip) => `server { listen ${ip}:${port}; location / { return 200 "ok\\n"; } }`),
      '}',
      '',
    ].join('\n'),
  );
  // The pods share cpu 1 with wrk: the server under test keeps cpu 0 to itself.
  const child = spawn('taskset', ['-c', CLIENT_CPU, NGINX, '-p', prefix, '-c', conf], { stdio: 'ignore' });
  children.add(child);
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get({ host: POD_IPS[0], port, path: '/', agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
    });
    if (ok) return { port, child };
    await delay(50);
  }
  throw new Error('the pods did not start');
}

interface Tables {
  /** Manifest files for `k8s-router run`, routes files for the bare contestants. */
  manifest: string;
  routes: string;
  count: number;
}

function writeTables(name: string, podPort: number, hosts: number, paths: number): Tables {
  const hostList = Array.from({ length: hosts }, (_, i) => `h${i}.bench.test`).join(' ');
  const pathList = ['/', ...Array.from({ length: paths - 1 }, (_, i) => `/p${String(i + 1).padStart(2, '0')}`)]
    .map((p) => `${podPort}:${p}`)
    .join(' ');
  const pods: Pod[] = POD_IPS.map((ip, i) =>
    pod(`bench-pod-${i}`, { ip, hosts: hostList, paths: pathList, ports: [podPort] }),
  );
  const table: RouteTable = buildRouteTable(defaultConfig(), pods, []);
  if (table.rejections.length > 0) throw new Error(`bench table ${name}: ${JSON.stringify(table.rejections[0])}`);
  const manifest = join(work, `${name}.yaml`);
  const routes = join(work, `${name}.routes.json`);
  writeFileSync(manifest, manifestText(pods));
  writeFileSync(routes, JSON.stringify(table.routes));
  return { manifest, routes, count: table.routes.length };
}

// ---------------------------------------------------------------------------------------
// Contestants

interface Running {
  address?: string;
  port: number;
  /** The server's process: its CPU time, and its descendants' (nginx), is read around each run. */
  pid: number;
  stop(): Promise<void>;
}

interface Contestant {
  name: string;
  label: string;
  start(tables: Tables, pinned: boolean, workers: string): Promise<Running>;
}

/**
 * `k8s-router run` on the table's manifest. nginx runs in either mode: `documented` (the
 * table rendered into nginx.conf) or `dynamic` (one constant nginx.conf, the table sent to
 * Lua in nginx over the control socket).
 */
function routerContestant(
  name: string,
  label: string,
  backend: 'nginx' | 'proxy',
  keepalive: number,
  nginxMode: NginxMode = 'documented',
): Contestant {
  return {
    name,
    label,
    async start(tables, pinned, workers) {
      const port = await pickFreeLoopbackPort();
      const child = start(
        [
          process.execPath,
          '--import',
          'tsx',
          'src/cli.ts',
          'run',
          '--manifest',
          tables.manifest,
          '--backend',
          backend,
          '--port',
          String(port),
          '--listen-address',
          '127.0.0.1',
          '--nginx-prefix',
          join(work, `nginx-${name}-${port}`),
          '--upstream-keepalive',
          String(keepalive),
          '--nginx-mode',
          nginxMode,
          '--worker-processes',
          workers,
          '--log-level',
          'warn',
          // Several routers run side by side: none takes the default admin port.
          '--admin-port',
          'off',
        ],
        pinned,
      );
      await waitFor200(port, label, child);
      return { port, pid: child.pid ?? -1, stop: () => stop(child) };
    },
  };
}

function bareContestant(name: string, label: string, script: string, ...extra: string[]): Contestant {
  return {
    name,
    label,
    async start(tables, pinned) {
      const port = await pickFreeLoopbackPort();
      const child = start(
        [process.execPath, '--import', 'tsx', `bench/contestants/${script}`, tables.routes, String(port), ...extra],
        pinned,
      );
      await waitFor200(port, label, child);
      return { port, pid: child.pid ?? -1, stop: () => stop(child) };
    },
  };
}

const direct = (podPort: number, podPid: number): Contestant => ({
  name: 'direct',
  label: 'direct to a pod (the limit)',
  async start() {
    return { address: POD_IPS[0], port: podPort, pid: podPid, stop: async () => {} };
  },
});

const CONTESTANTS = (podPort: number, podPid: number): Contestant[] => [
  direct(podPort, podPid),
  routerContestant('nginx', 'nginx, documented config', 'nginx', 0),
  routerContestant('nginx-keepalive', `nginx, upstream keep-alive ${KEEPALIVE}`, 'nginx', KEEPALIVE),
  routerContestant('nginx-dynamic', 'dynamic nginx (NGINX_MODE=dynamic), documented wire', 'nginx', 0, 'dynamic'),
  routerContestant(
    'nginx-dynamic-keepalive',
    `dynamic nginx, upstream keep-alive ${KEEPALIVE}`,
    'nginx',
    KEEPALIVE,
    'dynamic',
  ),
  routerContestant('proxy', 'our proxy, documented wire (Connection: close)', 'proxy', 0),
  routerContestant('proxy-keepalive', `our proxy, upstream keep-alive ${KEEPALIVE}`, 'proxy', KEEPALIVE),
  bareContestant('http-proxy', 'bare http-proxy 1.18.1', 'http-proxy.ts'),
  bareContestant('http-proxy-3', 'bare http-proxy-3 1.23', 'http-proxy-3.ts'),
  bareContestant('fastify', 'fastify + @fastify/reply-from', 'fastify-reply-from.ts'),
  // No library: what the clients themselves cost, the floor of any proxy built on each.
  bareContestant('node-http', "bare node:http client, no library (the floor of http-proxy's kind)", 'node-http.ts'),
  bareContestant('undici', 'bare undici Pool, no library', 'undici.ts'),
];

/** The proxy library inside the router: the same startProxy on each (head to head, full runs only). */
const LIBRARY_COMPARISON: Contestant[] = [
  bareContestant(
    'router-on-http-proxy',
    `our proxy on http-proxy 1.18.1 (startProxy), keep-alive ${KEEPALIVE}`,
    'our-proxy.ts',
  ),
  bareContestant(
    'router-on-http-proxy-3',
    `our proxy on http-proxy-3 1.23 (startProxy), keep-alive ${KEEPALIVE}`,
    'our-proxy.ts',
    'http-proxy-3',
  ),
  // The same server twice: how far apart two identical processes come out (the method's noise).
  bareContestant(
    'router-twin',
    `its twin: our proxy on http-proxy 1.18.1 (startProxy), keep-alive ${KEEPALIVE}`,
    'our-proxy.ts',
  ),
];

// ---------------------------------------------------------------------------------------
// wrk

interface Sample {
  rps: number;
  p50: number;
  p99: number;
  /** Non-2xx answers and socket errors: a run with any is not counted. */
  errors: number;
  /**
   * CPU time (user + system) the server's processes spent per request, in µs. Unlike
   * req/s it hardly changes when other work on the machine takes the server's core.
   */
  cpuUs: number;
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU seconds (user + system) of `pid` and of its living descendants, from /proc (Linux). */
function cpuSeconds(pid: number): number {
  let ticks = 0;
  const visit = (p: number): void => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
      for (const child of readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').split(' ').filter(Boolean))
        visit(Number(child));
    } catch {
      // Gone meanwhile: its time is no longer counted by anyone.
    }
  };
  visit(pid);
  return ticks / CLOCK_TICKS;
}

function ms(value: string, unit: string): number {
  const n = Number(value);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : n;
}

export function parseWrk(out: string): Omit<Sample, 'cpuUs'> & { requests: number } {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  // wrk pads a latency of whole seconds ("1.24s ") to the width of "1.24ms".
  const p50 = /^\s+50%\s+([\d.]+)(us|ms|s)\s*$/m.exec(out);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s)\s*$/m.exec(out);
  if (rps === null || p50 === null || p99 === null) throw new Error(`unexpected wrk output:\n${out}`);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = socket === null ? 0 : socket.slice(1).reduce((sum, n) => sum + Number(n), 0);
  const requests = Number(/(\d+) requests in /.exec(out)?.[1] ?? 0);
  return {
    rps: Number(rps[1]),
    p50: ms(p50[1] as string, p50[2] as string),
    p99: ms(p99[1] as string, p99[2] as string),
    errors: non2xx + socketErrors,
    requests,
  };
}

/** wrk as fast as it goes, or paced by a script (`--script`) that spaces each connection's requests. */
function wrk(server: Running, seconds: number, pinned: boolean, script?: string): Promise<Sample> {
  const url = `http://${server.address ?? '127.0.0.1'}:${server.port}${REQUEST_PATH}`;
  const paced = script === undefined ? [] : ['-s', script];
  const command = [
    'wrk',
    '-t1',
    `-c${CONNECTIONS}`,
    `-d${seconds}s`,
    '--latency',
    ...paced,
    '-H',
    `Host: ${HOST}`,
    url,
  ];
  const argv = pinned ? ['taskset', '-c', CLIENT_CPU, ...command] : command;
  const cpuBefore = cpuSeconds(server.pid);
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    // 'close', not 'exit': 'exit' can come before the last of wrk's output is read, which
    // left a run with status 0 and no output at all ("unexpected wrk output", seen twice).
    child.on('close', (code, signal) => {
      try {
        if (code !== 0) throw new Error(`wrk ended with ${signal ?? `status ${code}`} against ${url}:\n${out}`);
        const { requests, ...sample } = parseWrk(out);
        resolve({ ...sample, cpuUs: requests > 0 ? ((cpuSeconds(server.pid) - cpuBefore) * 1e6) / requests : 0 });
      } catch (err) {
        reject(err);
      }
    });
  });
}

async function warmUp(server: Running, pinned: boolean, script?: string): Promise<void> {
  if (WARMUP_SECONDS > 0) await wrk(server, WARMUP_SECONDS, pinned, script);
}

// ---------------------------------------------------------------------------------------
// Rounds

type Rounds = Map<string, Sample[]>;

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/**
 * Every contestant loaded in turn, `rounds` times, the order rotated each round; first a
 * warm-up for each (the JIT), unless they served a load already.
 */
async function interleave(
  running: Map<string, Running>,
  rounds: number,
  pinned: boolean,
  options: { warm?: boolean; script?: string } = {},
): Promise<Rounds> {
  const { script } = options;
  const names = [...running.keys()];
  const samples: Rounds = new Map(names.map((n) => [n, []]));
  if (options.warm !== true) for (const name of names) await warmUp(running.get(name) as Running, pinned, script);
  for (let round = 0; round < rounds; round++) {
    const order = [...names.slice(round % names.length), ...names.slice(0, round % names.length)];
    for (const name of order) {
      const sample = await wrk(running.get(name) as Running, SECONDS, pinned, script);
      (samples.get(name) as Sample[]).push(sample);
      const errors = sample.errors > 0 ? `, ${sample.errors} errors` : '';
      log(
        `round ${round + 1}/${rounds} ${name}: ${Math.round(sample.rps)} req/s, ` +
          `p50 ${sample.p50} ms, p99 ${sample.p99} ms${errors}`,
      );
    }
  }
  return samples;
}

interface Summary {
  name: string;
  label: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** CPU µs per request, median over the rounds. */
  cpuUs: number;
  /** Medians of the per-round ratios. */
  vsNginx: number | null;
  vsDirect: number | null;
  /** Requests per CPU second ÷ documented nginx's, median per round: the cost ratio, robust to a busy machine. */
  vsNginxCpu: number | null;
  rounds: Sample[];
}

function perRoundRatio(samples: Rounds, name: string, base: string): number | null {
  const a = samples.get(name);
  const b = samples.get(base);
  if (a === undefined || b === undefined) return null;
  return median(a.map((s, i) => s.rps / (b[i] as Sample).rps));
}

/** How many requests `name` serves per CPU second for one of `base`'s, median per round. */
function perRoundCpuRatio(samples: Rounds, name: string, base: string): number | null {
  const a = samples.get(name);
  const b = samples.get(base);
  if (a === undefined || b === undefined) return null;
  return median(a.map((s, i) => (b[i] as Sample).cpuUs / s.cpuUs));
}

function summarize(contestants: Contestant[], samples: Rounds): Summary[] {
  return contestants
    .filter((c) => samples.has(c.name))
    .map((c) => {
      const rounds = samples.get(c.name) as Sample[];
      return {
        name: c.name,
        label: c.label,
        rps: median(rounds.map((s) => s.rps)),
        p50: median(rounds.map((s) => s.p50)),
        p99: median(rounds.map((s) => s.p99)),
        errors: rounds.reduce((sum, s) => sum + s.errors, 0),
        cpuUs: median(rounds.map((s) => s.cpuUs)),
        vsNginx: perRoundRatio(samples, c.name, 'nginx'),
        vsDirect: perRoundRatio(samples, c.name, 'direct'),
        vsNginxCpu: perRoundCpuRatio(samples, c.name, 'nginx'),
        rounds,
      };
    });
}

/** Starts them all at once (nothing is measured until every one answers), keyed by name[@suffix]. */
async function startAll(
  contestants: Contestant[],
  tables: Tables,
  pinned: boolean,
  workers: string,
  suffix = '',
): Promise<Map<string, Running>> {
  if (contestants.length === 0) return new Map();
  const names = contestants.map((c) => c.name).join(', ');
  log(`starting ${names} (${tables.count} routes${pinned ? ', pinned' : ''}, nginx workers ${workers})`);
  const started = await Promise.all(
    contestants.map(async (c) => [`${c.name}${suffix}`, await c.start(tables, pinned, workers)] as const),
  );
  return new Map(started);
}

async function stopAll(running: Map<string, Running>): Promise<void> {
  await Promise.all([...running.values()].map((r) => r.stop()));
}

// ---------------------------------------------------------------------------------------
// Report

const fmt = (n: number | null, digits = 2): string => (n === null ? '–' : n.toFixed(digits));

function contestantTable(rows: Summary[]): string {
  const row = (r: Summary): string =>
    tableRow([
      r.label,
      Math.round(r.rps),
      fmt(r.p50),
      fmt(r.p99),
      fmt(r.vsNginx),
      fmt(r.vsDirect),
      Math.round(r.cpuUs),
      fmt(r.vsNginxCpu),
      r.errors,
    ]);
  return [
    ...tableHeader([
      'contestant',
      'req/s',
      'p50 ms',
      'p99 ms',
      '× documented nginx',
      '× direct',
      'CPU µs per request',
      '× documented nginx, per CPU second',
      'errors',
    ]),
    ...rows.map(row),
  ].join('\n');
}

/** The servers paced to one rate for the latency at the same load: each backend on each wire. */
const PACED = ['nginx', 'nginx-keepalive', 'nginx-dynamic', 'nginx-dynamic-keepalive', 'proxy', 'proxy-keepalive'];

/** The servers run over 10,000 routes as well as over 10 (the route count): each backend with upstream keep-alive. */
const COUNTED = ['nginx-keepalive', 'nginx-dynamic-keepalive', 'proxy-keepalive'];

/** Pairs run head to head: the method's noise, the library inside the router, then ours against the bare servers. */
const HEAD_TO_HEAD: [string, string][] = [
  ['router-on-http-proxy', 'router-twin'],
  ['router-on-http-proxy', 'router-on-http-proxy-3'],
  ['proxy-keepalive', 'http-proxy'],
  ['proxy-keepalive', 'fastify'],
  ['proxy-keepalive', 'node-http'],
  ['http-proxy', 'http-proxy-3'],
  // The route count, on each backend: the same server over 10,000 routes against 10.
  ['proxy-keepalive@10000', 'proxy-keepalive'],
  ['nginx-keepalive@10000', 'nginx-keepalive'],
  ['nginx-dynamic-keepalive@10000', 'nginx-dynamic-keepalive'],
];

interface HeadToHead {
  a: string;
  b: string;
  /** req/s of a ÷ req/s of b, median over the runs. */
  ratio: number;
  ratios: number[];
  /** CPU µs per request of b ÷ of a in the same runs, median: a's edge whatever share of the core each got. */
  cpuRatio: number;
}

/** A ratio against its bound: `met` is null when the ratio was not measured (--only, --quick). */
interface RatioTarget {
  what: string;
  value: number | null;
  target: string;
  met: boolean | null;
}

function target(what: string, value: number | null, bound: number, atLeast: boolean): RatioTarget {
  return {
    what,
    value,
    target: `${atLeast ? '≥' : '≤'} ${bound}`,
    met: value === null ? null : atLeast ? value >= bound : value <= bound,
  };
}

function checkTools(): void {
  for (const tool of ['wrk', 'taskset']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0)
      throw new Error(`${tool} is needed (apt-get install -y ${tool === 'taskset' ? 'util-linux' : tool})`);
  }
}

/** The delay a wrk script waits before each next request on a connection, for about `rate` req/s in all. */
const pacedDelayMs = (rate: number): number => Math.round((CONNECTIONS * 1000) / rate);

/**
 * Latency at the same load: the backends on both wires, paced to one rate all of them
 * sustain (half of what the slowest, our proxy on the documented wire, reached).
 */
async function measurePaced(
  running: Map<string, Running>,
  pinned: Summary[],
): Promise<{ pacedRate: number; pacedSamples: Rounds }> {
  const pacedNames = PACED.filter((n) => running.has(n));
  const slowest = Math.min(...pacedNames.map((n) => pinned.find((s) => s.name === n)?.rps ?? Infinity));
  const pacedRate = Number.isFinite(slowest) ? Math.max(100, Math.round(slowest / 2 / 100) * 100) : 0;
  if (pacedNames.length === 0) return { pacedRate, pacedSamples: new Map() };
  const script = join(work, 'paced.lua');
  // wrk waits delay() ms before each next request on a connection: CONNECTIONS connections, each
  // one request per delay, give about pacedRate requests per second while replies are quick.
  writeFileSync(script, `function delay()\n  return ${pacedDelayMs(pacedRate)}\nend\n`);
  log(`paced: about ${pacedRate} req/s`);
  const paced = new Map(pacedNames.map((n) => [n, running.get(n) as Running]));
  return { pacedRate, pacedSamples: await interleave(paced, ROUNDS, true, { warm: true, script }) };
}

/**
 * Head to head: two servers of one kind at once on the server core, each loaded by its own
 * wrk, so whatever else runs on the machine weighs on both alike and the ratio of their
 * req/s is the ratio of their costs per request.
 */
async function measureHeadToHead(running: Map<string, Running>): Promise<HeadToHead[]> {
  const headToHead: HeadToHead[] = [];
  for (const [a, b] of HEAD_TO_HEAD) {
    const x = running.get(a);
    const y = running.get(b);
    if (x === undefined || y === undefined) continue;
    await Promise.all([warmUp(x, true), warmUp(y, true)]);
    const ratios: number[] = [];
    const cpuRatios: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const [sx, sy] = await Promise.all([wrk(x, SECONDS, true), wrk(y, SECONDS, true)]);
      ratios.push(sx.rps / sy.rps);
      cpuRatios.push(sy.cpuUs / sx.cpuUs);
      log(
        `head to head ${round + 1}/${ROUNDS} ${a} ${Math.round(sx.rps)} (${Math.round(sx.cpuUs)} µs) : ` +
          `${b} ${Math.round(sy.rps)} (${Math.round(sy.cpuUs)} µs) req/s`,
      );
    }
    headToHead.push({ a, b, ratio: median(ratios), ratios, cpuRatio: median(cpuRatios) });
  }
  return headToHead;
}

interface RouteCount {
  backend: string;
  routes10: number;
  routes10000: number;
  ratio: number;
  cpuRatio: number;
}

/**
 * Route count: 10 against 10,000 routes, each backend with upstream keep-alive (the servers
 * of the pinned phase for 10 routes, warm already; the others warmed now).
 */
async function measureRouteCount(
  countContestants: Contestant[],
  main10: Map<string, Running>,
  routes10000: Map<string, Running>,
  tables: { small: Tables; large: Tables },
): Promise<RouteCount[]> {
  const { small, large } = tables;
  const routeCount: RouteCount[] = [];
  if (countContestants.length === 0) return routeCount;
  for (const server of routes10000.values()) await warmUp(server, true);
  const counting = new Map([
    ...countContestants.map((c) => [`${c.name}@${small.count}`, main10.get(c.name) as Running] as const),
    ...routes10000,
  ]);
  const counted = await interleave(counting, ROUNDS, true, { warm: true });
  for (const c of countContestants) {
    const a = counted.get(`${c.name}@${small.count}`) as Sample[];
    const b = counted.get(`${c.name}@${large.count}`) as Sample[];
    routeCount.push({
      backend: c.label,
      routes10: median(a.map((s) => s.rps)),
      routes10000: median(b.map((s) => s.rps)),
      ratio: median(b.map((s, i) => s.rps / (a[i] as Sample).rps)),
      cpuRatio: median(b.map((s, i) => (a[i] as Sample).cpuUs / s.cpuUs)),
    });
  }
  return routeCount;
}

/** One unpinned round, nginx with one worker per core (full runs only). */
async function measureUnpinned(contestants: Contestant[], small: Tables): Promise<Summary[]> {
  const unpinnedContestants = QUICK ? [] : contestants;
  if (unpinnedContestants.length === 0) return [];
  const running = await startAll(unpinnedContestants, small, false, 'auto');
  const unpinnedSamples = await interleave(running, 1, false);
  await stopAll(running);
  return summarize(unpinnedContestants, unpinnedSamples);
}

/** Everything the phases measured, and what the report needs to name it. */
interface Measured {
  podPort: number;
  small: Tables;
  large: Tables;
  pinnedSamples: Rounds;
  pinned: Summary[];
  pacedRate: number;
  pacedSamples: Rounds;
  paced: Summary[];
  headToHead: HeadToHead[];
  routeCount: RouteCount[];
  unpinned: Summary[];
}

async function measureAll(): Promise<Measured> {
  checkTools();
  const pods = await startPods();
  const small = writeTables('routes-10', pods.port, 2, 5);
  const large = writeTables('routes-10000', pods.port, 100, 100);
  const only = args.only?.split(',');
  const contestants = CONTESTANTS(pods.port, pods.child.pid ?? -1).filter(
    (c) => only === undefined || only.includes(c.name),
  );

  // Everything the pinned phases load, started at once (idle until measured): the
  // contestants, the two backends over 10,000 routes, and (full runs) the library pair.
  const countContestants = contestants.filter((c) => COUNTED.includes(c.name));
  const [main10, routes10000, libraries] = await Promise.all([
    startAll(contestants, small, true, '1'),
    startAll(countContestants, large, true, '1', `@${large.count}`),
    startAll(QUICK ? [] : LIBRARY_COMPARISON, small, true, '1'),
  ]);
  const running = new Map([...main10, ...routes10000, ...libraries]);

  // 1. The contestants, pinned, as fast as each goes.
  const pinnedSamples = await interleave(main10, ROUNDS, true);
  const pinned = summarize(contestants, pinnedSamples);
  const { pacedRate, pacedSamples } = await measurePaced(running, pinned);
  const paced = summarize(contestants, pacedSamples);
  const headToHead = QUICK ? [] : await measureHeadToHead(running);
  const routeCount = await measureRouteCount(countContestants, main10, routes10000, { small, large });
  await stopAll(running);
  const unpinned = await measureUnpinned(contestants, small);
  await stop(pods.child);
  const podPort = pods.port;
  return {
    podPort,
    small,
    large,
    pinnedSamples,
    pinned,
    pacedRate,
    pacedSamples,
    paced,
    headToHead,
    routeCount,
    unpinned,
  };
}

/** The ratios the targets are set on, each taken within a round or a run. */
class Ratios {
  constructor(private readonly m: Measured) {}

  /** req/s of `a` ÷ req/s of `b`, pinned, median per round. */
  rps(a: string, b: string): number | null {
    return perRoundRatio(this.m.pinnedSamples, a, b);
  }

  /** Requests per CPU second of `a` ÷ of `b`, pinned, median per round. */
  cpu(a: string, b: string): number | null {
    return perRoundCpuRatio(this.m.pinnedSamples, a, b);
  }

  headToHead(a: string, b: string): number | null {
    return this.m.headToHead.find((h) => h.a === a && h.b === b)?.ratio ?? null;
  }

  /** p99 of `a` ÷ p99 of `b` at the paced rate, median of the per-round ratios. */
  p99(a: string, b: string): number | null {
    const x = this.m.pacedSamples.get(a);
    const y = this.m.pacedSamples.get(b);
    return x === undefined || y === undefined ? null : median(x.map((s, i) => s.p99 / (y[i] as Sample).p99));
  }
}

/** A ratio of `a` to `b` by req/s and per CPU second, against the same bound (at least). */
function byRpsAndCpu(r: Ratios, what: string, a: string, b: string, bound: number): RatioTarget[] {
  return [target(what, r.rps(a, b), bound, true), target(`${what}, per CPU second`, r.cpu(a, b), bound, true)];
}

function proxyTargets(r: Ratios): RatioTarget[] {
  return [
    ...byRpsAndCpu(r, 'our proxy with keep-alive × documented nginx', 'proxy-keepalive', 'nginx', 0.75),
    ...byRpsAndCpu(r, 'our proxy with keep-alive × bare http-proxy', 'proxy-keepalive', 'http-proxy', 0.9),
    target(
      'our proxy with keep-alive × bare http-proxy, head to head',
      r.headToHead('proxy-keepalive', 'http-proxy'),
      0.9,
      true,
    ),
    ...byRpsAndCpu(r, 'our proxy with keep-alive × fastify + reply-from', 'proxy-keepalive', 'fastify', 1),
    target(
      'our proxy with keep-alive × fastify + reply-from, head to head',
      r.headToHead('proxy-keepalive', 'fastify'),
      1,
      true,
    ),
    ...byRpsAndCpu(r, 'our proxy, documented wire × documented nginx', 'proxy', 'nginx', 0.25),
  ];
}

function nginxTargets(r: Ratios): RatioTarget[] {
  return [
    ...byRpsAndCpu(r, 'nginx with keep-alive × documented nginx', 'nginx-keepalive', 'nginx', 2),
    ...byRpsAndCpu(r, 'dynamic nginx, documented wire × documented nginx', 'nginx-dynamic', 'nginx', 0.9),
    ...byRpsAndCpu(r, 'dynamic nginx with keep-alive × documented nginx', 'nginx-dynamic-keepalive', 'nginx', 2.5),
  ];
}

function latencyTargets(r: Ratios, pacedRate: number): RatioTarget[] {
  return [
    target(
      `p99 of our proxy ÷ p99 of nginx, documented wire, at ${pacedRate} req/s`,
      r.p99('proxy', 'nginx'),
      3,
      false,
    ),
    target(
      `p99 of our proxy ÷ p99 of nginx, both with keep-alive, at ${pacedRate} req/s`,
      r.p99('proxy-keepalive', 'nginx-keepalive'),
      3,
      false,
    ),
    target(
      `p99 of our proxy with keep-alive ÷ p99 of documented nginx, at ${pacedRate} req/s`,
      r.p99('proxy-keepalive', 'nginx'),
      3,
      false,
    ),
  ];
}

function routeCountTargets(r: Ratios, routeCount: RouteCount[]): RatioTarget[] {
  return [
    ...routeCount.flatMap((c) => [
      target(`${c.backend}: 10,000 routes × 10 routes`, c.ratio, 0.95, true),
      target(`${c.backend}: 10,000 routes × 10 routes, per CPU second`, c.cpuRatio, 0.95, true),
    ]),
    target(
      'our proxy: 10,000 routes × 10 routes, head to head',
      r.headToHead('proxy-keepalive@10000', 'proxy-keepalive'),
      0.95,
      true,
    ),
    target(
      'nginx: 10,000 routes × 10 routes, head to head',
      r.headToHead('nginx-keepalive@10000', 'nginx-keepalive'),
      0.95,
      true,
    ),
    target(
      'dynamic nginx: 10,000 routes × 10 routes, head to head',
      r.headToHead('nginx-dynamic-keepalive@10000', 'nginx-dynamic-keepalive'),
      0.95,
      true,
    ),
  ];
}

function targetsOf(m: Measured): RatioTarget[] {
  const r = new Ratios(m);
  return [
    ...proxyTargets(r),
    ...nginxTargets(r),
    ...latencyTargets(r, m.pacedRate),
    ...routeCountTargets(r, m.routeCount),
  ];
}

/** How the figures were taken: the load, the pods, the pinning, the ratios and the CPU time. */
function methodSection(small: Tables): string[] {
  return [
    `wrk \`-t1 -c${CONNECTIONS} -d${SECONDS}s --latency\`, \`GET ${REQUEST_PATH}\` with \`Host: ${HOST}\`, ` +
      `${ROUNDS} round(s), contestants interleaved with the order rotated each round ` +
      `(after a ${WARMUP_SECONDS} s warm-up each${QUICK ? '; a smoke run' : ''}).`,
    `Three pods: one separate nginx answering \`return 200\` on ${POD_IPS.join(', ')}. ` +
      `The route table: ${small.count} routes (2 hosts × 5 paths, each route on the three pods).`,
    '',
    `Pinning: every server under test runs on cpu ${SERVER_CPU} (\`taskset -c ${SERVER_CPU}\`, nginx's workers ` +
      `and the router's children inherit it), wrk and the pods on cpu ${CLIENT_CPU}. The machine has two cores: ` +
      'left unpinned, wrk would take cycles from the server it measures, and the figures would depend on the ' +
      'scheduler more than on the server.',
    '',
    'Ratios are computed in each round (against documented nginx and against direct, measured minutes apart at ' +
      'most) and the table gives their median; req/s, p50 and p99 are medians over the rounds.',
    '',
    "CPU µs per request: the user and system CPU time of the server's processes (nginx's workers included, read " +
      "from /proc) over the requests wrk counted. When other work takes the server's core, req/s drops but the " +
      'CPU time per request hardly moves, so the "per CPU second" ratios (documented nginx\'s CPU per request ÷ ' +
      "the contestant's) compare costs on a busy machine; on a quiet one they say what each would serve with a " +
      'core to itself, where req/s may be held back by the other core (wrk and the pods).',
    '',
  ];
}

function pacedSection(pacedRate: number, paced: Summary[]): string[] {
  return [
    `## Latency at the same load: about ${pacedRate} req/s (pinned)`,
    '',
    [
      'Documented nginx, dynamic nginx and our proxy, each on the documented wire and with upstream keep-alive,',
      `each of the ${CONNECTIONS} connections sending its next request`,
      `${pacedDelayMs(pacedRate)} ms after the last one (a wrk script's delay()),`,
      'so all of them serve about the same rate: half of what the slowest of them reached above.',
      'The p99 ratios in the targets are taken per round and summarized by their median.',
    ].join(' '),
    '',
    ...tableHeader(['contestant', 'req/s', 'p50 ms', 'p99 ms', 'CPU µs per request', 'errors']),
    ...paced.map((r) => tableRow([r.label, Math.round(r.rps), fmt(r.p50), fmt(r.p99), Math.round(r.cpuUs), r.errors])),
    '',
  ];
}

function headToHeadSection(headToHead: HeadToHead[], labelOf: (key: string) => string): string[] {
  const headToHeadRow = (h: HeadToHead): string =>
    tableRow([labelOf(h.a), labelOf(h.b), fmt(h.ratio), h.ratios.map((r) => fmt(r)).join(', '), fmt(h.cpuRatio)]);
  return [
    '## Head to head (pinned, upstream keep-alive)',
    '',
    ...(headToHead.length === 0
      ? ['Not run with --quick.']
      : [
          [
            `Two servers of one kind at once on cpu ${SERVER_CPU}, each loaded by its own wrk on cpu ${CLIENT_CPU}`,
            `for ${SECONDS} s, ${ROUNDS} times: whatever else the machine runs weighs on both alike, so the ratio of`,
            'their req/s measures their cost per request even on a busy machine. (Not used between nginx and Node:',
            'one nginx worker and one Node process do not share a core the same way.) The first pair is one server',
            'against an identical copy of itself: how far from 1 the method puts two equal servers on this machine.',
            'The second is the library comparison inside the router: the same startProxy on each library.',
            'The last three are the route count of each backend.',
          ].join(' '),
          '',
          ...tableHeader([
            'first',
            'second',
            'req/s, first ÷ second (median)',
            'per run',
            'per CPU second, first ÷ second (median)',
          ]),
          ...headToHead.map(headToHeadRow),
        ]),
    '',
  ];
}

function routeCountSection(m: Measured): string[] {
  return [
    '## Route count (pinned, upstream keep-alive)',
    '',
    `The same traffic through ${m.small.count} routes and through ${m.large.count} (100 hosts × 100 paths): ` +
      "the request matches only `/` on its host, so a lookup that walks the host's paths walks all 100.",
    '',
    ...tableHeader([
      'backend',
      'req/s, 10 routes',
      'req/s, 10,000 routes',
      '10,000 ÷ 10 (median per round)',
      '10,000 ÷ 10, per CPU second',
    ]),
    ...m.routeCount.map((r) =>
      tableRow([r.backend, Math.round(r.routes10), Math.round(r.routes10000), fmt(r.ratio), fmt(r.cpuRatio)]),
    ),
    '',
  ];
}

function unpinnedSection(unpinned: Summary[]): string[] {
  return [
    '## One unpinned round, nginx with `worker_processes auto`',
    '',
    ...(unpinned.length === 0
      ? ['Not run with --quick.']
      : [
          'Nothing pinned: wrk, the pods and the server share both cores; nginx runs one worker per core, ' +
            'the Node servers one process.',
          '',
          contestantTable(unpinned),
        ]),
    '',
  ];
}

function targetsSection(targets: RatioTarget[]): string[] {
  return [
    '## Targets',
    '',
    ...tableHeader(['what', 'value', 'target', 'met']),
    ...targets.map((t) => tableRow([t.what, fmt(t.value), t.target, t.met === null ? '–' : metCell(t.met)])),
  ];
}

function markdownOf(m: Measured, targets: RatioTarget[], dynamic: ReturnType<typeof dynamicComparisons>): string {
  const labelOf = (key: string): string => {
    const [name, routes] = key.split('@');
    const label = [...CONTESTANTS(m.podPort, -1), ...LIBRARY_COMPARISON].find((c) => c.name === name)?.label ?? key;
    return routes === undefined ? label : `${label}, ${Number(routes).toLocaleString('en-US')} routes`;
  };
  return [
    ...methodSection(m.small),
    '## Contestants (pinned)',
    '',
    contestantTable(m.pinned),
    '',
    ...floorNote(m.pinned, m.headToHead),
    ...dynamicSection(dynamic),
    ...pacedSection(m.pacedRate, m.paced),
    ...headToHeadSection(m.headToHead, labelOf),
    ...routeCountSection(m),
    ...unpinnedSection(m.unpinned),
    ...targetsSection(targets),
  ].join('\n');
}

async function main(): Promise<void> {
  const m = await measureAll();
  const ratios = new Ratios(m);
  const dynamic = dynamicComparisons(m.pinned, ratios.rps.bind(ratios), ratios.cpu.bind(ratios));
  const targets = targetsOf(m);
  const markdown = markdownOf(m, targets, dynamic);
  const charts: Chart[] = [
    {
      title: `Data plane, req/s × documented nginx (pinned, median of ${ROUNDS} round(s))`,
      unit: '×',
      bars: m.pinned.filter((s) => s.vsNginx !== null).map((s) => ({ label: s.label, value: s.vsNginx as number })),
    },
  ];
  const written = writeReport({
    name: 'data-plane',
    title: 'Data plane: throughput and latency of both backends and of bare proxies',
    command: invocation('bench/data-plane.ts'),
    results: {
      quick: QUICK,
      rounds: ROUNDS,
      seconds: SECONDS,
      connections: CONNECTIONS,
      pinned: m.pinned,
      dynamic,
      paced: { rate: m.pacedRate, contestants: m.paced },
      headToHead: m.headToHead,
      routeCount: m.routeCount,
      unpinned: m.unpinned,
      // The rows bench/run.ts puts in the summary; a figure not measured (--only, --quick) is left out.
      targets: targets
        .filter((t) => t.value !== null)
        .map((t) => ({ target: t.what, goal: t.target, measured: fmt(t.value), met: t.met === true })),
    },
    markdown,
    charts,
  });
  process.stdout.write(`${markdown}\n\n${written.join('\n')}\n`);
}

/**
 * Where our proxy stands against the bare clients: a proxy on node:http pays at least what
 * node:http's client and server cost; head to head on one core says how much more it pays.
 */
function floorNote(pinned: Summary[], headToHead: HeadToHead[]): string[] {
  const cost = (name: string): number | undefined => pinned.find((s) => s.name === name)?.cpuUs;
  const [ours, nodeHttp, undici, nginx] = [cost('proxy-keepalive'), cost('node-http'), cost('undici'), cost('nginx')];
  if (ours === undefined || nodeHttp === undefined || nginx === undefined) return [];
  const vsFloor = headToHead.find((h) => h.a === 'proxy-keepalive' && h.b === 'node-http');
  const lines = [
    'The floor: bare node:http, its client and server with no library and no routing rules, ' +
      `cost ${Math.round(nodeHttp)} µs of CPU per request in these rounds ` +
      `and our proxy with keep-alive ${Math.round(ours)} µs (documented nginx: ${Math.round(nginx)} µs).`,
    vsFloor === undefined
      ? ''
      : `Head to head on one core, our proxy served ${fmt(vsFloor.ratio)} times what bare node:http served: ` +
        "host and path matching, nginx's answers, API keys and retries cost next to nothing beside node:http's " +
        "own work, so a proxy on node:http's client (http-proxy's kind) stays about where ours is.",
    undici === undefined
      ? ''
      : `Bare undici, whose client costs far less, took ${Math.round(undici)} µs per request ` +
        `(${fmt(nginx / undici)}× documented nginx per CPU second).`,
  ];
  return [lines.filter(Boolean).join(' '), ''];
}

interface Comparison {
  what: string;
  /** req/s of the first ÷ of the second, median per round. */
  ratio: number | null;
  /** The same per CPU second: the second's CPU per request ÷ the first's. */
  cpuRatio: number | null;
  goal: string;
}

/**
 * Dynamic nginx (the table as data in Lua, one constant nginx.conf) against documented
 * nginx (a config rendered from the table), on each wire; the same ratios are targets
 * where a target is set.
 */
function dynamicComparisons(
  pinned: Summary[],
  ratioOf: (a: string, b: string) => number | null,
  cpuRatioOf: (a: string, b: string) => number | null,
): { comparisons: Comparison[]; cpuUs: { name: string; label: string; cpuUs: number }[] } {
  const pair = (what: string, a: string, b: string, goal: string): Comparison => ({
    what,
    ratio: ratioOf(a, b),
    cpuRatio: cpuRatioOf(a, b),
    goal,
  });
  return {
    comparisons: [
      pair('dynamic nginx × documented nginx, both on the documented wire', 'nginx-dynamic', 'nginx', '≥ 0.9'),
      pair(
        'dynamic nginx with keep-alive × documented nginx on the documented wire',
        'nginx-dynamic-keepalive',
        'nginx',
        '≥ 2.5',
      ),
      pair(
        'dynamic nginx with keep-alive × documented nginx with keep-alive',
        'nginx-dynamic-keepalive',
        'nginx-keepalive',
        'none',
      ),
    ],
    cpuUs: ['nginx', 'nginx-keepalive', 'nginx-dynamic', 'nginx-dynamic-keepalive'].flatMap((name) => {
      const s = pinned.find((row) => row.name === name);
      return s === undefined ? [] : [{ name, label: s.label, cpuUs: s.cpuUs }];
    }),
  };
}

function dynamicSection(dynamic: ReturnType<typeof dynamicComparisons>): string[] {
  if (dynamic.cpuUs.length === 0) return [];
  return [
    '## Dynamic nginx against documented nginx (pinned)',
    '',
    [
      'The same rounds as above: `k8s-router run --backend nginx --nginx-mode dynamic`, whose nginx.conf is the',
      'same whatever the routes and whose Lua picks the route and the pod of each request, against the documented',
      'config, where nginx itself matches `server_name` and `location`.',
    ].join(' '),
    '',
    '| comparison | req/s ratio (median per round) | per CPU second (median per round) | target |',
    '|---|---|---|---|',
    ...dynamic.comparisons.map((c) => tableRow([c.what, fmt(c.ratio), fmt(c.cpuRatio), c.goal])),
    '',
    '| nginx | CPU µs per request (master and workers, median of the rounds) |',
    '|---|---|',
    ...dynamic.cpuUs.map((c) => `| ${c.label} | ${Math.round(c.cpuUs)} |`),
    '',
  ];
}

async function cleanUp(): Promise<void> {
  await Promise.all([...children].map((c) => stop(c)));
  rmSync(work, { recursive: true, force: true });
}

process.on('SIGINT', () => {
  void cleanUp().then(() => process.exit(130));
});

try {
  await main();
} finally {
  await cleanUp();
}
