import { setTimeout as sleep } from 'node:timers/promises';
import type { Pod, Secret } from '../../src/core/kube-objects.js';
import { eventually } from './eventually.js';
import type { FakeApiServer } from './fake-api-server.js';
import { apiKeySecret, pod } from './objects.js';
import { lastPrintedConfig, printedConfigs, startPrintingRouter, type PrintingRouter } from './printed-configs.js';
import { seededRandom } from './seeded-random.js';

// Watch chaos: `k8s-router run` (a real process) follows the fake API server while, in
// bursts of a few seconds, objects change and the server misbehaves in every way the
// router must survive: streams dropped, history compacted (410), 500s and 403s, watches
// that stall before or after their headers, watches answered 410 at once or ended after one
// event, and the server gone altogether. Each burst is followed by a quiet period: faults
// cleared (stalled streams cut, as a proxy that resets them would), a fence written (a pod
// and a Secret no earlier period used), and the router must print the table of the final
// objects within 5 s, then nothing else.
//
// The API server's request log gives the request rate the router caused: the most
// requests in any one second. The bound comes from the backoff: each collection starts an
// attempt (a list if needed, then a watch) at most every initial backoff / 2 (250 ms), so
// in any second at most 5 attempts of at most 2 requests each (the lists here fit one
// page) for each of the 2 collections: 20 requests.

export const CONVERGE_WITHIN_MS = 5_000;
/** WATCH_BACKOFF_MAX_MS for the router: a fault at the end of a burst costs at most this. */
export const BACKOFF_MAX_MS = 2_000;
/** The first backoff step, as `run` derives it from WATCH_BACKOFF_MAX_MS (min(500, max)). */
const BACKOFF_INITIAL_MS = Math.min(500, BACKOFF_MAX_MS);
const COLLECTIONS = 2;
const REQUESTS_PER_ATTEMPT = 2;
/** The most requests the backoff lets the router send in any one second. */
export const REQUEST_RATE_BOUND =
  COLLECTIONS * REQUESTS_PER_ATTEMPT * (Math.floor(1000 / (BACKOFF_INITIAL_MS / 2)) + 1);

export type FaultKind =
  | 'drop'
  | 'compact'
  | '500'
  | '403'
  | 'stall-after-headers'
  | 'stall-before-headers'
  | 'gone-watches'
  | 'short-watches'
  | 'outage';
const FAULTS: readonly FaultKind[] = [
  'drop',
  'compact',
  '500',
  '403',
  'stall-after-headers',
  'stall-before-headers',
  'gone-watches',
  'short-watches',
  'outage',
];
/** Faults that last a while; one at a time. */
const LASTING = new Set<FaultKind>(['stall-after-headers', 'stall-before-headers', 'short-watches', 'outage']);

export interface ChaosOptions {
  /** How long to keep going; the last quiet period may end a little after. */
  durationMs: number;
  /** Length of a burst of changes and faults, drawn in this range. */
  burstMs: [number, number];
  /** How long the table must stay unchanged once right. */
  holdMs: number;
  seed: number;
  backend?: 'proxy' | 'nginx';
}

export interface QuietPeriod {
  /** From the fence to the first print of the expected config (null: not within 30 s). */
  convergedMs: number | null;
  /** Configs printed after the expected one while nothing changed (0 unless a stale table came back). */
  printedAfter: number;
  /** The data plane confirmed the last table. */
  served: boolean;
}

export interface ChaosReport {
  seed: number;
  durationMs: number;
  bursts: number;
  changes: number;
  faults: Record<FaultKind, number>;
  quiet: QuietPeriod[];
  convergence: { maxMs: number | null; p99Ms: number | null; medianMs: number | null };
  requests: { total: number; lists: number; watches: number; peakPerSecond: number; peakAt: number; bound: number };
  /**
   * Lists and watches after the first of each collection: the router's relists and watch restarts as the server saw
   * them.
   */
  relists: number;
  watchRestarts: number;
  /** "k8s-router is serving" lines (1: it never restarted) and whether the process is alive at the end. */
  servingLines: number;
  alive: boolean;
  routerExit: number | NodeJS.Signals;
}

const NAMESPACES = ['chaos-a', 'chaos-b', 'chaos-c'];
const POD_NAMES = ['p0', 'p1', 'p2', 'p3'];
const HOSTS = ['a.chaos', 'b.chaos', 'c.chaos', 'd.chaos'];
const PATHS = ['80:/', '80:/api', '8080:/v2/'];

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)] as T;
}

function randomPod(random: () => number): Pod {
  const hosts = HOSTS.filter(() => random() < 0.4);
  const paths = PATHS.filter(() => random() < 0.5);
  return pod(pick(random, POD_NAMES), {
    namespace: pick(random, NAMESPACES),
    ip: `10.1.0.${1 + Math.floor(random() * 50)}`,
    hosts: (hosts.length > 0 ? hosts : ['a.chaos']).join(' '),
    paths: (paths.length > 0 ? paths : ['80:/']).join(' '),
    ports: [80, 8080],
    ready: random() < 0.85,
    phase: random() < 0.9 ? 'Running' : 'Pending',
    labels: random() < 0.9 ? { routable: 'true' } : { routable: 'false' },
    created: pick(random, ['2024-01-01T00:00:00Z', '2024-02-01T00:00:00Z']),
  });
}

function randomSecret(random: () => number): Secret {
  return apiKeySecret(pick(random, NAMESPACES), pick(random, ['k1', 'k2', 'k3']), pick(random, ['routing', 'other']));
}

/** One random object change on the API server. */
function change(api: FakeApiServer, random: () => number): void {
  const r = random();
  if (r < 0.55) api.upsert(randomPod(random));
  else if (r < 0.8) api.remove('Pod', pick(random, NAMESPACES), pick(random, POD_NAMES));
  else if (r < 0.93) api.upsert(randomSecret(random));
  else api.remove('Secret', pick(random, NAMESPACES), pick(random, ['routing', 'other']));
}

/** Puts the server back to normal (lasting faults have ended with their burst). */
function clearFaults(api: FakeApiServer): void {
  api.clearFaults();
  api.stallWatches(false);
}

/** Starts one fault; the ones that last end by themselves before `until`. */
async function fault(api: FakeApiServer, kind: FaultKind, random: () => number, until: number): Promise<void> {
  const count = 1 + Math.floor(random() * 4);
  const lasting = Math.max(0, Math.min(until - Date.now(), 300 + random() * 1200));
  switch (kind) {
    case 'drop':
      api.dropStreams();
      return;
    case 'compact':
      api.compact();
      api.dropStreams();
      return;
    case '500':
    case '403':
      api.failRequests(Number(kind), { count });
      api.dropStreams();
      return;
    case 'gone-watches':
      api.goneWatches(count);
      api.dropStreams();
      return;
    case 'stall-after-headers':
    case 'stall-before-headers':
      api.stallWatches(kind === 'stall-after-headers' ? 'after-headers' : 'before-headers');
      api.dropStreams();
      await sleep(lasting);
      // The router would wait out its quiet timeout (150 s); a proxy in between resets them.
      api.stallWatches(false);
      api.dropStreams();
      return;
    case 'short-watches':
      api.shortWatches(true);
      api.dropStreams();
      await sleep(lasting);
      api.shortWatches(false);
      return;
    case 'outage':
      await api.stop();
      await sleep(lasting);
      await api.restart();
      return;
  }
}

/** The most requests in any window of one second (by arrival), and when that window started. */
export function peakRequestRate(times: number[]): { peak: number; at: number } {
  const sorted = [...times].sort((a, b) => a - b);
  let peak = 0;
  let at = sorted[0] ?? 0;
  let from = 0;
  for (let to = 0; to < sorted.length; to++) {
    while ((sorted[to] as number) - (sorted[from] as number) >= 1000) from++;
    if (to - from + 1 > peak) {
      peak = to - from + 1;
      at = sorted[from] as number;
    }
  }
  return { peak, at };
}

function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1] as number;
}

/** One burst: changes every 20..120 ms, and a fault every 150..600 ms. */
async function burst(
  api: FakeApiServer,
  random: () => number,
  lengthMs: number,
  counts: { changes: number; faults: Record<FaultKind, number> },
): Promise<void> {
  const until = Date.now() + lengthMs;
  let lasting: Promise<void> | null = null;
  let nextFaultAt = Date.now() + 150 + random() * 450;
  while (Date.now() < until) {
    change(api, random);
    counts.changes += 1;
    if (Date.now() >= nextFaultAt) {
      const kind = pick(random, lasting === null ? FAULTS : FAULTS.filter((f) => !LASTING.has(f)));
      counts.faults[kind] += 1;
      const running = fault(api, kind, random, until);
      if (LASTING.has(kind)) lasting = running.finally(() => (lasting = null));
      else await running;
      nextFaultAt = Date.now() + 150 + random() * 450;
    }
    await sleep(20 + random() * 100);
  }
  await lasting;
}

let fences = 0;

/** The quiet period after a burst: clear, fence, then watch what the router prints. */
async function quietPeriod(printing: PrintingRouter, holdMs: number): Promise<QuietPeriod> {
  const { api, router } = printing;
  clearFaults(api);
  fences += 1;
  api.upsert(
    pod('fence', {
      namespace: 'chaos-fence',
      ip: '10.1.1.1',
      hosts: `fence-${fences}.chaos`,
      paths: '80:/',
      ports: [80],
    }),
  );
  api.upsert(apiKeySecret('chaos-fence', `fence-${fences}`));
  const expected = printing.expected();
  const fencedAt = Date.now();
  const converged = await eventually(
    () => lastPrintedConfig(router.stdout()) === expected,
    'the expected table',
    30_000,
  ).then(
    () => Date.now() - fencedAt,
    () => null,
  );
  const printedFrom = router.stdout().length;
  await sleep(holdMs);
  // The fence always changes the table, so a "changed" line precedes the last "served" one.
  const last = (msg: string): number => router.logs.map((l) => l.msg).lastIndexOf(msg);
  return {
    convergedMs: converged,
    printedAfter: printedConfigs(router.stdout().slice(printedFrom)).length,
    served: last('route table served') > last('route table changed'),
  };
}

/** Runs bursts and quiet periods for `durationMs` against a router process, and reports. */
export async function runWatchChaos(options: ChaosOptions): Promise<ChaosReport> {
  const random = seededRandom(options.seed);
  const printing = await startPrintingRouter(
    options.backend ?? 'proxy',
    // Default batching windows: the router as deployed. The backoff capped at 2 s keeps the
    // recovery after the last fault of a burst within the 5 s.
    { HOLD_OFF_MS: '100', MAX_DELAY_MS: '250', WATCH_BACKOFF_MAX_MS: String(BACKOFF_MAX_MS) },
    { bookmarkIntervalMs: 500 },
  );
  const { api, router } = printing;
  const counts = { changes: 0, faults: Object.fromEntries(FAULTS.map((f) => [f, 0])) as Record<FaultKind, number> };
  const quiet: QuietPeriod[] = [];
  const started = Date.now();
  let bursts = 0;
  let routerExit: number | NodeJS.Signals = -1;
  let alive = false;
  try {
    while (Date.now() - started < options.durationMs) {
      const [min, max] = options.burstMs;
      await burst(api, random, min + random() * (max - min), counts);
      bursts += 1;
      quiet.push(await quietPeriod(printing, options.holdMs));
    }
  } finally {
    alive = !router.hasExited();
    routerExit = await printing.close();
  }
  const times = quiet
    .map((q) => q.convergedMs)
    .filter((ms): ms is number => ms !== null)
    .sort((a, b) => a - b);
  const requests = api.requests.filter((r) => r.path === '/api/v1/pods' || r.path === '/api/v1/secrets');
  const lists = requests.filter((r) => !r.watch);
  const watches = requests.filter((r) => r.watch);
  const rate = peakRequestRate(requests.map((r) => r.at));
  return {
    seed: options.seed,
    durationMs: Date.now() - started,
    bursts,
    changes: counts.changes,
    faults: counts.faults,
    quiet,
    convergence: { maxMs: times.at(-1) ?? null, p99Ms: percentile(times, 99), medianMs: percentile(times, 50) },
    requests: {
      total: requests.length,
      lists: lists.length,
      watches: watches.length,
      peakPerSecond: rate.peak,
      peakAt: Math.max(0, rate.at - started),
      bound: REQUEST_RATE_BOUND,
    },
    relists: Math.max(0, lists.filter((r) => r.status === 200).length - COLLECTIONS),
    watchRestarts: Math.max(0, watches.length - COLLECTIONS),
    servingLines: router.logs.filter((l) => l.msg === 'k8s-router is serving').length,
    alive,
    routerExit,
  };
}

/** The report as lines for a test's diagnostics. */
export function describeChaos(report: ChaosReport): string[] {
  const faults = Object.entries(report.faults)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  const slow = report.quiet
    .map((q, i) => ({ i, ...q }))
    .filter((q) => q.convergedMs === null || q.convergedMs > CONVERGE_WITHIN_MS || q.printedAfter > 0 || !q.served);
  const { convergence, requests } = report;
  return [
    `seed ${report.seed} (replay with WATCH_CHAOS_SEED=${report.seed}), ${Math.round(report.durationMs / 1000)} s, ` +
      `${report.bursts} bursts, ${report.changes} object changes`,
    `faults injected: ${faults} (${Object.values(report.faults).reduce((a, b) => a + b, 0)} in all)`,
    `quiet periods: ${report.quiet.length}; converged in median ${convergence.medianMs} ms, ` +
      `p99 ${convergence.p99Ms} ms, max ${convergence.maxMs} ms (bound ${CONVERGE_WITHIN_MS} ms)`,
    `requests at the API server: ${requests.total} (${requests.lists} lists, ${requests.watches} watches); ` +
      `relists ${report.relists}, watch restarts ${report.watchRestarts}`,
    `peak request rate: ${requests.peakPerSecond} in one second ` +
      `(from ${(requests.peakAt / 1000).toFixed(1)} s into the run), bound from the backoff ${requests.bound}`,
    `router: "serving" logged ${report.servingLines} time(s), alive at the end: ${report.alive}, ` +
      `exit on SIGTERM: ${String(report.routerExit)}`,
    ...slow.map(
      (q) =>
        `quiet period ${q.i + 1}: converged ${q.convergedMs ?? 'never'} ms, ` +
        `${q.printedAfter} config(s) printed after the right one, served ${q.served}`,
    ),
  ];
}

/** What a chaos run must show: every quiet period right within 5 s and then steady, the rate bounded, the router up. */
export function chaosViolations(report: ChaosReport): string[] {
  const out: string[] = [];
  report.quiet.forEach((q, i) => {
    if (q.convergedMs === null || q.convergedMs > CONVERGE_WITHIN_MS)
      out.push(`quiet period ${i + 1}: the table was right after ${q.convergedMs ?? 'more than 30,000'} ms`);
    if (q.printedAfter > 0)
      out.push(`quiet period ${i + 1}: ${q.printedAfter} other table(s) printed after the right one`);
    if (!q.served) out.push(`quiet period ${i + 1}: the data plane did not confirm the last table`);
  });
  if (report.requests.peakPerSecond > report.requests.bound)
    out.push(`${report.requests.peakPerSecond} requests in one second, above the bound of ${report.requests.bound}`);
  if (report.servingLines !== 1 || !report.alive)
    out.push(`the router restarted or exited (serving lines ${report.servingLines}, alive ${report.alive})`);
  if (report.routerExit !== 0) out.push(`the router exited with ${String(report.routerExit)} on SIGTERM`);
  return out;
}

/** A seed from WATCH_CHAOS_SEED, or a new one (printed with the report for a replay). */
export function chaosSeed(): number {
  const given = process.env.WATCH_CHAOS_SEED;
  return given ? Number(given) : Math.floor(Math.random() * 2 ** 31);
}
