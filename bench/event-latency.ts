// Event-to-routed latency and reload coalescing of `k8s-router run` following a cluster.
//
//   node --import tsx bench/event-latency.ts [--events N] [--burst N]
//
// For each backend it starts the fake Kubernetes API server (test/support), one real pod
// on 127.0.0.x and the router as a child process, with the default HOLD_OFF_MS and
// MAX_DELAY_MS unless told otherwise, then measures:
//
// 1. Event-to-routed latency: from the moment the fake API server emits a pod ADDED (the
//    upsert writes the watch event synchronously) to the first request through the router
//    that the new pod answers, polling the router every ~2 ms on a new connection. Events
//    are sequential, with a quiet gap between them so none is coalesced with the one before.
// 2. A burst of pod events (1,000 upserts as fast as the fake server takes them): the table
//    rebuilds the controller logs ("route table changed"), the nginx reloads ("nginx serves
//    the new config", `reloads`), and the time until the burst's last pod is served.
//
// Prints a Markdown report on standard output. These are measurements, not pass/fail checks.

import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
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

type BackendName = 'proxy' | 'nginx';

interface Timing {
  holdOffMs: number;
  maxDelayMs: number;
}

const { values: args } = parseArgs({
  options: {
    events: { type: 'string', default: '50' },
    burst: { type: 'string', default: '1000' },
  },
});
const EVENTS = Number(args.events);
const BURST = Number(args.burst);
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
  const dir = await mkdtemp(join(tmpdir(), `k8s-router-bench-${backend}-`));
  const api = await FakeApiServer.start();
  const pod = await startPod(`bench-${backend}`, podIp);
  const port = await pickFreeLoopbackPort();
  const router = await startRouterProcess(['--backend', backend], {
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
  return outcome.kind === 'response' && outcome.status === 200 && outcome.headers.some(([k, v]) => k.toLowerCase() === 'x-pod' && v === setup.pod.name);
}

/** Milliseconds from `since` until `host` is served, polling every ~2 ms. */
async function untilServed(setup: Setup, host: string, since: number): Promise<number> {
  for (;;) {
    if (await served(setup, host)) return performance.now() - since;
    if (performance.now() - since > GIVE_UP_MS) throw new Error(`${host} not served after ${GIVE_UP_MS} ms`);
    await delay(POLL_EVERY_MS);
  }
}

function percentile(sorted: number[], p: number): number {
  // Nearest rank: the smallest value with at least p% of the samples at or below it.
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
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
      nginxReloads: backend === 'nginx' ? lastReloads(router.logs) - reloadsBefore : null,
      nginxServesLines: backend === 'nginx' ? during.filter((l) => l.msg === 'nginx serves the new config').length : null,
    };
  } finally {
    await setup.close();
  }
}

/** The `reloads` count of the last "nginx serves the new config" line (0 before any). */
function lastReloads(logs: Array<Record<string, unknown>>): number {
  for (let i = logs.length - 1; i >= 0; i--) {
    const line = logs[i] as Record<string, unknown>;
    if (line.msg === 'nginx serves the new config' && typeof line.reloads === 'number') return line.reloads;
  }
  return 0;
}

function machine(): string {
  const cpu = cpus();
  let nginx: string;
  try {
    // `nginx -v` writes to standard error.
    nginx = execFileSync('sh', ['-c', 'PATH="$PATH:/usr/sbin:/usr/local/sbin" nginx -v 2>&1'], { encoding: 'utf8' }).trim();
  } catch {
    nginx = 'nginx not found';
  }
  return `${cpu.length} cores (${cpu[0]?.model ?? 'unknown CPU'}), Node ${process.version}, ${nginx}`;
}

const fmt = (ms: number): string => ms.toFixed(1);

async function main(): Promise<void> {
  const rows: LatencyResult[] = [];
  const ips: Record<BackendName, string> = { proxy: '127.0.0.201', nginx: '127.0.0.202' };
  for (const timing of [DEFAULT_TIMING, NO_BATCHING]) {
    for (const backend of ['proxy', 'nginx'] as const) {
      process.stderr.write(`latency: ${backend}, HOLD_OFF_MS=${timing.holdOffMs} MAX_DELAY_MS=${timing.maxDelayMs}\n`);
      rows.push(await measureLatency(backend, timing, ips[backend]));
    }
  }
  const bursts: BurstResult[] = [];
  for (const paceMs of [0, 2]) {
    for (const backend of ['proxy', 'nginx'] as const) {
      process.stderr.write(`burst: ${backend}, one upsert every ${paceMs} ms\n`);
      bursts.push(await measureBurst(backend, ips[backend], paceMs));
    }
  }

  const out: string[] = [];
  out.push('# Event-to-routed latency and reloads per burst');
  out.push('');
  out.push(`Command: \`node --import tsx bench/event-latency.ts${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}\``);
  out.push('');
  out.push(`Date: ${new Date().toISOString()}`);
  out.push('');
  out.push(`Machine: ${machine()}`);
  out.push('');
  out.push('## 1. Event-to-routed latency');
  out.push('');
  out.push(
    `From the fake API server emitting a pod ADDED (a new host) to the first request through the router that the pod answers, polled every ~${POLL_EVERY_MS} ms on new connections. ` +
      `${EVENTS} sequential events per row, ${QUIET_GAP_MS} ms apart; after each, the pod is deleted and its host waited out.`,
  );
  out.push('');
  out.push('| backend | HOLD_OFF_MS / MAX_DELAY_MS | events | min ms | median ms | p99 ms | max ms |');
  out.push('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const s = r.samples;
    out.push(
      `| ${r.backend} | ${r.timing.holdOffMs} / ${r.timing.maxDelayMs} | ${s.length} | ${fmt(s[0] as number)} | ${fmt(percentile(s, 50))} | ${fmt(percentile(s, 99))} | ${fmt(s.at(-1) as number)} |`,
    );
  }
  out.push('');
  out.push('## 2. A burst of pod events');
  out.push('');
  out.push(
    `${BURST} pod upserts (each a new pod with its own host), default HOLD_OFF_MS/MAX_DELAY_MS (100/250): first as fast as the fake server takes them, ` +
      'then paced at one upsert every 2 ms (a burst longer than MAX_DELAY_MS, so the maximum delay cuts it into several rebuilds). ' +
      'Counted from the router logs from the first upsert until 2 s after the last pod was served.',
  );
  out.push('');
  out.push('| backend | events | pace | upserts took ms | last pod served after ms | table rebuilds logged ("route table changed") | nginx reloads (`reloads` delta) | "nginx serves the new config" lines |');
  out.push('|---|---|---|---|---|---|---|---|');
  for (const b of bursts) {
    out.push(
      `| ${b.backend} | ${b.events} | ${b.paceMs === 0 ? 'as fast as possible' : `every ${b.paceMs} ms`} | ${fmt(b.emitMs)} | ${fmt(b.servedMs)} | ${b.tableChanges} | ${b.nginxReloads ?? 'n/a'} | ${b.nginxServesLines ?? 'n/a'} |`,
    );
  }
  out.push('');
  process.stdout.write(`${out.join('\n')}\n`);
}

await main();
