// Event-to-routed latency and reload coalescing of `k8s-router run` following a cluster.
//
//   node --import tsx bench/event-latency.ts [--quick] [--events N] [--burst N]
//
// --quick: 6 events per row and a burst of 200, instead of 50 and 1,000, with the default
// batching window only and no paced burst.
//
// For each backend (the in-process proxy, documented nginx, and dynamic nginx:
// `--backend nginx --nginx-mode dynamic`) it starts the fake Kubernetes API server
// (test/support), one real pod on 127.0.0.x and the router as a child process, with the
// default HOLD_OFF_MS and MAX_DELAY_MS unless told otherwise, then measures:
//
// 1. Event-to-routed latency: from the moment the fake API server emits a pod ADDED (the
//    upsert writes the watch event synchronously) to the first request through the router
//    that the new pod answers, polling the router every ~2 ms on a new connection. Events
//    are sequential, with a quiet gap between them so none is coalesced with the one before.
// 2. A burst of pod events (1,000 upserts as fast as the fake server takes them): the table
//    rebuilds the controller logs ("route table changed"), the nginx reloads (the `reloads`
//    count of the manager's "nginx serves the new config" and "nginx serves the new table"
//    lines), and the time until the burst's last pod is served. Documented nginx reloads
//    once for a burst; dynamic nginx sends the table and never reloads.
//
// Records the results through bench/lib/report.ts (bench/results/event-latency.*). These are
// measurements, not pass/fail checks.

import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { pickFreeLoopbackPort } from '../nginx/status.js';
import { sendRaw } from '../test/conformance/raw-http.js';
import { delay } from '../test/support/eventually.js';
import { FakeApiServer } from '../test/support/fake-api-server.js';
import { podFor } from '../test/support/manifests.js';
import { startPod, type TestPod } from '../test/support/pods.js';
import { startRouterProcess, type RouterProcess } from '../test/support/router-process.js';
import { tableHeader, tableRow, targetsTable } from './lib/markdown.js';
import { invocation, writeReport, type Target } from './lib/report.js';
import { percentile } from './lib/stats.js';
import { workDir } from '../test/support/work-dir.js';

type BackendName = 'proxy' | 'nginx' | 'nginx-dynamic';

const BACKENDS: readonly BackendName[] = ['proxy', 'nginx', 'nginx-dynamic'];

/** How `k8s-router run` is told to run each backend. */
const BACKEND_ARGS: Record<BackendName, string[]> = {
  proxy: ['--backend', 'proxy'],
  nginx: ['--backend', 'nginx'],
  'nginx-dynamic': ['--backend', 'nginx', '--nginx-mode', 'dynamic'],
};

const isNginx = (backend: BackendName): boolean => backend !== 'proxy';

/** The reloads a burst may cause: documented nginx loads one new config, dynamic nginx none. */
const RELOADS_PER_BURST: Record<BackendName, number | null> = { proxy: null, nginx: 1, 'nginx-dynamic': 0 };

const BURST_GOALS: Record<BackendName, string> = {
  proxy: '1 rebuild',
  nginx: '1 rebuild, 1 reload (a burst causes one reload, not N)',
  'nginx-dynamic': '1 rebuild, 0 reloads (dynamic nginx never reloads for routes)',
};

/** The manager's line for each table nginx serves: a config loaded (start, reload), or a table sent (dynamic). */
const SERVES_LINES = new Set(['nginx serves the new config', 'nginx serves the new table']);

interface Timing {
  holdOffMs: number;
  maxDelayMs: number;
}

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    events: { type: 'string' },
    burst: { type: 'string' },
  },
});
const EVENTS = Number(args.events ?? (args.quick ? 6 : 50));
const BURST = Number(args.burst ?? (args.quick ? 200 : 1000));
const DEFAULT_TIMING: Timing = { holdOffMs: 100, maxDelayMs: 250 };
/** The floor without batching, to show how much of the latency the batching window is. */
const NO_BATCHING: Timing = { holdOffMs: 0, maxDelayMs: 0 };
/** Between sequential events: longer than the maximum delay, so each event is applied alone. */
const QUIET_GAP_MS = 400;
const POLL_EVERY_MS = 2;
const GIVE_UP_MS = 30_000;

interface Setup {
  api: FakeApiServer;
  router: RouterProcess;
  pod: TestPod;
  port: number;
  close(): Promise<void>;
}

async function setUp(backend: BackendName, timing: Timing, podIp: string): Promise<Setup> {
  const dir = await workDir(`k8s-router-bench-${backend}-`);
  const api = await FakeApiServer.start();
  const pod = await startPod(`bench-${backend}`, podIp);
  const port = await pickFreeLoopbackPort();
  const router = await startRouterProcess(BACKEND_ARGS[backend], {
    PORT: String(port),
    LISTEN_ADDRESS: '127.0.0.1',
    NGINX_PREFIX: join(dir, 'nginx'),
    HOLD_OFF_MS: String(timing.holdOffMs),
    MAX_DELAY_MS: String(timing.maxDelayMs),
    KUBECONFIG: api.kubeConfigFile(),
    LOG_LEVEL: 'info',
  });
  return {
    api,
    router,
    pod,
    port,
    async close() {
      const exit = await router.stop();
      if (exit !== 0) throw new Error(`the ${backend} router exited with ${String(exit)}`);
      await pod.close();
      await api.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Whether the pod answers a request for `host` through the router. */
async function served(setup: Setup, host: string): Promise<boolean> {
  const outcome = await sendRaw(setup.port, { method: 'GET', target: '/', headers: [['Host', host]] }, 2_000);
  return (
    outcome.kind === 'response' &&
    outcome.status === 200 &&
    outcome.headers.some(([k, v]) => k.toLowerCase() === 'x-pod' && v === setup.pod.name)
  );
}

/** Milliseconds from `since` until `host` is served, polling every ~2 ms. */
async function untilServed(setup: Setup, host: string, since: number): Promise<number> {
  for (;;) {
    if (await served(setup, host)) return performance.now() - since;
    if (performance.now() - since > GIVE_UP_MS) throw new Error(`${host} not served after ${GIVE_UP_MS} ms`);
    await delay(POLL_EVERY_MS);
  }
}

interface LatencyResult {
  backend: BackendName;
  timing: Timing;
  samples: number[];
}

async function measureLatency(backend: BackendName, timing: Timing, podIp: string): Promise<LatencyResult> {
  const setup = await setUp(backend, timing, podIp);
  const samples: number[] = [];
  try {
    for (let i = 0; i < EVENTS; i++) {
      const host = `event-${i}.bench`;
      await delay(QUIET_GAP_MS);
      const emitted = performance.now();
      setup.api.upsert(podFor(setup.pod, { namespace: 'bench', hosts: host, paths: ['/'] }));
      samples.push(await untilServed(setup, host, emitted));
      // Deleted again, so that the next event is an ADDED as well, on a table of the same size.
      setup.api.remove('Pod', 'bench', setup.pod.name);
      await untilGone(setup, host);
    }
  } finally {
    await setup.close();
  }
  return { backend, timing, samples: samples.sort((a, b) => a - b) };
}

/** Waits until `host` is no longer served, so the next event starts from the same table. */
async function untilGone(setup: Setup, host: string): Promise<void> {
  const deadline = performance.now() + GIVE_UP_MS;
  while (await served(setup, host)) {
    if (performance.now() > deadline) throw new Error(`${host} still served after ${GIVE_UP_MS} ms`);
    await delay(POLL_EVERY_MS);
  }
}

interface BurstResult {
  backend: BackendName;
  events: number;
  /** 0: as fast as the fake server takes them; else one upsert every paceMs. */
  paceMs: number;
  /** How long the fake server took to take all the upserts. */
  emitMs: number;
  /** From the first upsert until the last pod of the burst is served. */
  servedMs: number;
  tableChanges: number;
  nginxReloads: number | null;
  nginxServesLines: number | null;
}

async function measureBurst(backend: BackendName, podIp: string, paceMs: number): Promise<BurstResult> {
  const setup = await setUp(backend, DEFAULT_TIMING, podIp);
  try {
    const { api, router } = setup;
    const logsBefore = router.logs.length;
    const reloadsBefore = lastReloads(router.logs);
    const started = performance.now();
    for (let i = 0; i < BURST; i++) {
      const pod = podFor(setup.pod, { namespace: 'burst', hosts: `burst-${i}.bench`, paths: ['/'] });
      pod.metadata = { ...pod.metadata, name: `burst-${String(i).padStart(4, '0')}` };
      api.upsert(pod);
      if (paceMs > 0) await delay(paceMs);
      // Let the watch streams flush now and then, as a busy API server would.
      else if (i % 50 === 49) await new Promise((resolve) => setImmediate(resolve));
    }
    const emitMs = performance.now() - started;
    const servedMs = await untilServed(setup, `burst-${BURST - 1}.bench`, started);
    // Changes still on their way would be counted late: wait out a few batching windows.
    await delay(2_000);
    const during = router.logs.slice(logsBefore);
    return {
      backend,
      events: BURST,
      paceMs,
      emitMs,
      servedMs,
      tableChanges: during.filter((l) => l.msg === 'route table changed').length,
      nginxReloads: isNginx(backend) ? lastReloads(router.logs) - reloadsBefore : null,
      nginxServesLines: isNginx(backend) ? during.filter((l) => SERVES_LINES.has(l.msg as string)).length : null,
    };
  } finally {
    await setup.close();
  }
}

/** The `reloads` count of the manager's last line saying nginx serves a new config or table (0 before any). */
function lastReloads(logs: Array<Record<string, unknown>>): number {
  for (let i = logs.length - 1; i >= 0; i--) {
    const line = logs[i] as Record<string, unknown>;
    if (SERVES_LINES.has(line.msg as string) && typeof line.reloads === 'number') return line.reloads;
  }
  return 0;
}

const fmt = (ms: number): string => ms.toFixed(1);

/** Each backend's pod address: the backends run one after the other, each with a pod of its own. */
const POD_IPS: Record<BackendName, string> = {
  proxy: '127.0.0.201',
  nginx: '127.0.0.202',
  'nginx-dynamic': '127.0.0.203',
};

async function measureLatencies(): Promise<LatencyResult[]> {
  const rows: LatencyResult[] = [];
  // --quick: the default batching window only, and only the burst as fast as possible.
  for (const timing of args.quick ? [DEFAULT_TIMING] : [DEFAULT_TIMING, NO_BATCHING]) {
    for (const backend of BACKENDS) {
      process.stderr.write(`latency: ${backend}, HOLD_OFF_MS=${timing.holdOffMs} MAX_DELAY_MS=${timing.maxDelayMs}\n`);
      rows.push(await measureLatency(backend, timing, POD_IPS[backend]));
    }
  }
  return rows;
}

async function measureBursts(): Promise<BurstResult[]> {
  const bursts: BurstResult[] = [];
  for (const paceMs of args.quick ? [0] : [0, 2]) {
    for (const backend of BACKENDS) {
      process.stderr.write(`burst: ${backend}, one upsert every ${paceMs} ms\n`);
      bursts.push(await measureBurst(backend, POD_IPS[backend], paceMs));
    }
  }
  return bursts;
}

/** One target per backend: the burst as fast as it comes causes one rebuild, and the reloads its mode allows. */
function burstTargets(bursts: BurstResult[]): Target[] {
  return bursts
    .filter((b) => b.paceMs === 0)
    .map((b) => ({
      target: `${b.backend}: ${b.events} pod events as fast as they come`,
      goal: BURST_GOALS[b.backend],
      // A burst longer than MAX_DELAY_MS is cut into several rebuilds by design: say how long it took.
      measured:
        `${b.tableChanges} rebuild(s)${b.nginxReloads === null ? '' : `, ${b.nginxReloads} reload(s)`}` +
        ` (the upserts took ${Math.round(b.emitMs)} ms; MAX_DELAY_MS ${DEFAULT_TIMING.maxDelayMs})`,
      met: b.tableChanges === 1 && b.nginxReloads === RELOADS_PER_BURST[b.backend],
    }));
}

function latencySection(rows: LatencyResult[]): string[] {
  const latencyRow = (r: LatencyResult): string => {
    const s = r.samples;
    const timing = `${r.timing.holdOffMs} / ${r.timing.maxDelayMs}`;
    const quantiles = [s[0] as number, percentile(s, 50), percentile(s, 99), s.at(-1) as number].map(fmt);
    return tableRow([r.backend, timing, s.length, ...quantiles]);
  };
  return [
    '## 1. Event-to-routed latency',
    '',
    'From the fake API server emitting a pod ADDED (a new host) to the first request through the router ' +
      `that the pod answers, polled every ~${POLL_EVERY_MS} ms on new connections. ` +
      `${EVENTS} sequential events per row, ${QUIET_GAP_MS} ms apart; ` +
      'after each, the pod is deleted and its host waited out.',
    '',
    ...tableHeader(['backend', 'HOLD_OFF_MS / MAX_DELAY_MS', 'events', 'min ms', 'median ms', 'p99 ms', 'max ms']),
    ...rows.map(latencyRow),
    '',
  ];
}

function burstSection(bursts: BurstResult[]): string[] {
  const burstRow = (b: BurstResult): string =>
    tableRow([
      b.backend,
      b.events,
      b.paceMs === 0 ? 'as fast as possible' : `every ${b.paceMs} ms`,
      fmt(b.emitMs),
      fmt(b.servedMs),
      b.tableChanges,
      b.nginxReloads ?? 'n/a',
      b.nginxServesLines ?? 'n/a',
    ]);
  return [
    '## 2. A burst of pod events',
    '',
    `${BURST} pod upserts (each a new pod with its own host), default HOLD_OFF_MS/MAX_DELAY_MS (100/250): ` +
      'as fast as the fake server takes them' +
      (args.quick
        ? '. '
        : ', then paced at one upsert every 2 ms ' +
          '(a burst longer than MAX_DELAY_MS, so the maximum delay cuts it into several rebuilds). ') +
      'Counted from the router logs from the first upsert until 2 s after the last pod was served.',
    '',
    [
      '| backend | events | pace | upserts took ms | last pod served after ms',
      '| table rebuilds logged ("route table changed") | nginx reloads (`reloads` delta)',
      '| "nginx serves the new config/table" lines |',
    ].join(' '),
    '|---|---|---|---|---|---|---|---|',
    ...bursts.map(burstRow),
    '',
  ];
}

const summaryOf = (r: LatencyResult): { backend: BackendName; timing: Timing; medianMs: number; p99Ms: number } => ({
  backend: r.backend,
  timing: r.timing,
  medianMs: percentile(r.samples, 50),
  p99Ms: percentile(r.samples, 99),
});

function report(rows: LatencyResult[], bursts: BurstResult[]): void {
  const targets = burstTargets(bursts);
  const markdown = ['## Targets', '', ...targetsTable(targets), '', ...latencySection(rows), ...burstSection(bursts)];
  writeReport({
    name: 'event-latency',
    title: 'Event-to-routed latency and reloads per burst',
    command: invocation('bench/event-latency.ts'),
    results: {
      quick: args.quick,
      events: EVENTS,
      burst: BURST,
      targets,
      latency: rows.map((r) => ({ ...summaryOf(r), samples: r.samples })),
      bursts,
    },
    markdown: markdown.join('\n'),
    charts: [
      {
        title: 'Event-to-routed latency, median (ms)',
        unit: 'ms',
        bars: rows.map((r) => ({
          label: `${r.backend}, HOLD_OFF_MS ${r.timing.holdOffMs} / MAX_DELAY_MS ${r.timing.maxDelayMs}`,
          value: summaryOf(r).medianMs,
        })),
      },
    ],
  });
  process.stderr.write('event-latency: wrote bench/results/event-latency.{json,md,svg}\n');
}

const latencies = await measureLatencies();
report(latencies, await measureBursts());
