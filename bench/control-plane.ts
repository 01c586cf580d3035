// Control-plane figures: route table + nginx.conf from scratch and after one
// changed pod, manifest parsing, nginx -t and reload-until-live, and the proxy's stall
// while tables are rebuilt with requests in flight.
//
//   node --import tsx bench/control-plane.ts [--quick]
//
// The project is compiled first (tsc, into a temporary directory) and every measurement
// runs in its own plain-node child (bench/lib/control-plane-tasks.ts): sizes share no heap,
// the RSS is that of the router's code and not of tsx (about 45 MB more), and the code
// measured is what `npm run build` ships. --quick leaves out 50,000 pods and 10,000
// nginx routes and repeats less, to finish in about a minute.

import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { BuildResult, NginxResult, ParseResult, StallWindow } from './lib/control-plane-tasks.js';
import { tableHeader, tableRow, targetsTable } from './lib/markdown.js';
import { invocation, writeReport, type Chart, type Target } from './lib/report.js';
import { median } from './lib/stats.js';

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const QUICK = args.quick;
const REPO = new URL('..', import.meta.url).pathname;

const PLAN = QUICK
  ? {
      buildSizes: [100, 1_000, 10_000],
      fullPodsAt: [],
      repeats: 3,
      parseSizes: [1_000, 10_000],
      yamlUpTo: 10_000,
      nginxRoutes: [100, 1_000],
      nginxRepeats: 1,
      stall: [10_000],
      stallRepeats: 2,
      manifests: ['yaml'],
      manifestRepeats: 1,
    }
  : {
      buildSizes: [100, 1_000, 10_000, 50_000],
      fullPodsAt: [10_000],
      repeats: 5,
      parseSizes: [100, 1_000, 10_000, 50_000],
      yamlUpTo: 10_000,
      nginxRoutes: [100, 1_000, 10_000],
      nginxRepeats: 3,
      stall: [10_000, 50_000],
      stallRepeats: 3,
      manifests: ['json', 'yaml'],
      manifestRepeats: 2,
    };
/** Pods in the manifest the stall is measured with while it is edited. */
const MANIFEST_PODS = 10_000;
const CHANGES_AT = 10_000;

function log(line: string): void {
  process.stderr.write(`control-plane: ${line}\n`);
}

const ms = (value: number): string =>
  value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
const spread = (values: readonly number[]): string => `${ms(Math.min(...values))}–${ms(Math.max(...values))}`;
const count = (n: number): string => n.toLocaleString('en-US');

// --- the compiled project and its children ---------------------------------------------

/** Compiles src/, nginx/, proxy/ and the tasks with tsc; returns the tasks' entry point. */
async function compile(dir: string): Promise<string> {
  const out = join(dir, 'out');
  const tsconfig = {
    extends: join(REPO, 'tsconfig.json'),
    compilerOptions: {
      rootDir: REPO,
      outDir: out,
      sourceMap: false,
      noEmit: false,
      typeRoots: [join(REPO, 'node_modules/@types')],
    },
    include: ['src', 'nginx', 'proxy', 'bench/lib'].map((d) => join(REPO, d)),
  };
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
  // The compiled files import packages: let them find the project's.
  await mkdir(out);
  await symlink(join(REPO, 'node_modules'), join(out, 'node_modules'));
  const tsc = join(REPO, 'node_modules/typescript/bin/tsc');
  await new Promise<void>((resolve, reject) =>
    execFile(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')], (err, stdout, stderr) =>
      err ? reject(new Error(`tsc failed:\n${stdout}${stderr}`)) : resolve(),
    ),
  );
  return join(out, 'bench/lib/control-plane-tasks.js');
}

interface Child {
  /** The first line that starts with `prefix`, without it. */
  line(prefix: string): Promise<string>;
  send(line: string): void;
  result: Promise<unknown>;
  exited: Promise<void>;
}

function startTask(entry: string, taskArgs: string[]): Child {
  const child = spawn(process.execPath, [entry, ...taskArgs], { stdio: ['pipe', 'pipe', 'inherit'] });
  const reader = createInterface({ input: child.stdout });
  let resolveResult: (value: unknown) => void = () => undefined;
  let rejectResult: (err: Error) => void = () => undefined;
  const result = new Promise<unknown>((resolve, reject) => {
    resolveResult = resolve;
    rejectResult = reject;
  });
  const seen: string[] = [];
  reader.on('line', (line) => {
    seen.push(line);
    if (line.startsWith('RESULT ')) resolveResult(JSON.parse(line.slice(7)));
  });
  const exited = new Promise<void>((resolve) => {
    child.on('exit', (code, signal) => {
      if (code !== 0)
        rejectResult(
          new Error(`task ${taskArgs.join(' ')} exited with ${code ?? signal}: ${seen.slice(-5).join(' | ')}`),
        );
      resolve();
    });
  });
  const line = (prefix: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const onLine = (text: string): void => {
        if (!text.startsWith(prefix)) return;
        reader.off('line', onLine);
        resolve(text.slice(prefix.length));
      };
      reader.on('line', onLine);
      void exited.then(() => reject(new Error(`task ${taskArgs.join(' ')} ended without a line ${prefix}`)));
    });
  return { line, send: (text) => child.stdin.write(`${text}\n`), result, exited };
}

async function runTask<T>(entry: string, taskArgs: string[]): Promise<T> {
  log(taskArgs.join(' '));
  return (await startTask(entry, taskArgs).result) as T;
}

interface StallRow extends StallWindow {
  pods: number;
  /** The cluster (an in-memory source as the Kubernetes one) or a manifest file being edited. */
  source: string;
  answered: number;
  failed: number;
  longestGapMs: number;
}

/** The repetitions of one scenario: on a shared machine, the least of them is the code's own. */
interface StallSummary {
  pods: number;
  source: string;
  scenario: string;
  runs: StallRow[];
}

// --- the stall: a pod server and steady requests from here, the proxy in the child -------

const CONCURRENCY = 4;

/** What the stall task says once its proxy serves: where to send requests. */
interface Ready {
  port: number;
  host: string;
  apiKey: string;
}

/** A pod that answers every request with 200 `ok`, on a free loopback port. */
async function startPodServer(): Promise<{ port: number; close(): Promise<void> }> {
  const pod = createServer((req, res) => {
    req.resume();
    res.end('ok');
  });
  await new Promise<void>((resolve) => pod.listen(0, '127.0.0.1', resolve));
  return {
    port: (pod.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => pod.close(() => resolve())),
  };
}

/** When each answer came (ms since the epoch, as the task's windows are): good ones and failed ones. */
interface Answers {
  answeredAt: number[];
  failedAt: number[];
}

/** Steady requests, CONCURRENCY at a time on kept-alive connections, until stop(); each answer's time. */
function steadyRequests(target: Ready): Answers & { stop(): Promise<void> } {
  const answers: Answers = { answeredAt: [], failedAt: [] };
  let running = true;
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const now = (): number => performance.timeOrigin + performance.now();
  const once = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const headers = { host: target.host, 'x-routing-api-key': target.apiKey };
      const req = request({ host: '127.0.0.1', port: target.port, path: '/', agent, headers }, (res) => {
        res.resume();
        res.on('end', () => {
          (res.statusCode === 200 ? answers.answeredAt : answers.failedAt).push(now());
          resolve();
        });
      });
      req.on('error', () => {
        answers.failedAt.push(now());
        resolve();
      });
      req.end();
    });
  const loop = async (): Promise<void> => {
    while (running) await once();
  };
  const loops = Array.from({ length: CONCURRENCY }, loop);
  return {
    ...answers,
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}

/** A window's answers, failures and the longest time without an answer that overlaps it. */
function windowCounts(
  w: StallWindow,
  { answeredAt, failedAt }: Answers,
): Pick<StallRow, 'answered' | 'failed' | 'longestGapMs'> {
  let longestGapMs = 0;
  let answered = 0;
  for (let i = 1; i < answeredAt.length; i++) {
    const before = answeredAt[i - 1] as number;
    const at = answeredAt[i] as number;
    if (at >= w.startedAt && at <= w.endedAt) answered++;
    if (at >= w.startedAt && before <= w.endedAt) longestGapMs = Math.max(longestGapMs, at - before);
  }
  const failed = failedAt.filter((at) => at >= w.startedAt && at <= w.endedAt).length;
  return { answered, failed, longestGapMs };
}

async function measureStall(
  entry: string,
  pods: number,
  scenarios: string[],
  manifest: string | null = null,
): Promise<StallRow[]> {
  const pod = await startPodServer();
  const child = startTask(entry, [
    'stall',
    '--pods',
    String(pods),
    '--pod-port',
    String(pod.port),
    '--scenarios',
    scenarios.join(';'),
    ...(manifest === null ? [] : ['--manifest', manifest]),
  ]);
  log(`stall --pods ${pods}${manifest === null ? '' : ` --manifest ${manifest}`} (${scenarios.join(', ')})`);
  const target = JSON.parse(await child.line('READY ')) as Ready;
  const answers = steadyRequests(target);
  child.send('GO');
  const result = (await child.result) as { windows: StallWindow[] };
  await answers.stop();
  child.send('STOP');
  await child.exited;
  await pod.close();
  const source = manifest === null ? 'cluster' : `${manifest.toUpperCase()} manifest`;
  return result.windows.map((w) => ({ ...w, pods, source, ...windowCounts(w, answers) }));
}

// --- the report ------------------------------------------------------------------------

/** Table + render of each warm build. */
const warmTotals = (b: BuildResult): number[] => b.warmTableMs.map((t, i) => t + (b.warmRenderMs[i] as number));

function buildRow(b: BuildResult): string {
  const refTotal = median(b.referenceTableMs.map((t, i) => t + (b.referenceRenderMs[i] as number)));
  const warm = warmTotals(b);
  return tableRow([
    count(b.pods),
    b.podObjects,
    count(b.routes),
    `${(b.confBytes / 2 ** 20).toFixed(1)} MB in ${b.confPieces}`,
    `${ms(b.coldTableMs)} + ${ms(b.coldRenderMs)} = **${ms(b.coldTableMs + b.coldRenderMs)}**`,
    ms(b.coldHashMs),
    `${ms(median(b.warmTableMs))} + ${ms(median(b.warmRenderMs))} = **${ms(median(warm))}** (${spread(warm)})`,
    `${ms(median(b.referenceTableMs))} + ${ms(median(b.referenceRenderMs))} = ${ms(refTotal)}`,
    `${b.rssBeforeMiB.toFixed(0)} MB`,
    `**${b.peakRssMiB.toFixed(0)} MB**`,
  ]);
}

function buildTable(builds: BuildResult[]): string {
  return [
    ...tableHeader([
      'pods',
      'pod objects',
      'routes',
      'nginx.conf (pieces)',
      'first build in the process: table + render ms',
      "the manager's hash of it ms",
      'again, JIT warm: median (min–max)',
      'reference buildRouteTable + renderNginxConf, warm median',
      'RSS before (node + pods)',
      'peak RSS',
    ]),
    ...builds.map(buildRow),
  ].join('\n');
}

function changesTable(build: BuildResult): string {
  const rows = build.changes.map((c) => {
    const total = changeTotals(c);
    const cell = (values: number[]): string => `${ms(median(values))} / ${ms(Math.max(...values))}`;
    const all = `**${ms(median(total))}** / ${ms(Math.max(...total))}`;
    return tableRow([
      c.kind,
      c.tableMs.length,
      cell(c.tableMs),
      cell(c.renderMs),
      cell(c.hashMs),
      all,
      cell(c.writeMs),
    ]);
  });
  return [
    ...tableHeader([
      'change',
      'times',
      'table ms median / max',
      'render ms median / max',
      "the manager's version (hash) ms median / max",
      'all three, on the event loop, ms median / max',
      'write + fsync of the pieces (thread pool, wall) ms median / max',
    ]),
    ...rows,
  ].join('\n');
}

/** Table, render and the manager's hash of the config, per change: the event loop's share. */
function changeTotals(c: BuildResult['changes'][number]): number[] {
  return c.tableMs.map((t, i) => t + (c.renderMs[i] as number) + (c.hashMs[i] as number));
}

function parseTable(parses: ParseResult[]): string {
  const rows = parses.map((p) => {
    const json = median(p.jsonParseMs);
    const ratio = (x: number): string => `${(x / json).toFixed(1)}×`;
    const mb = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MB`;
    const yamlMs = p.yamlBytes === null ? 0 : median(p.manifestYamlMs);
    const yaml =
      p.yamlBytes === null ? '| not run | not run' : `| ${mb(p.yamlBytes)} | ${ms(yamlMs)} (${ratio(yamlMs)})`;
    const jsonMs = median(p.manifestJsonMs);
    return `| ${count(p.pods)} | ${mb(p.jsonBytes)} | ${ms(json)} | ${ms(jsonMs)} (${ratio(jsonMs)}) ${yaml} |`;
  });
  return [
    '| pods | JSON | JSON.parse ms | parseManifest, JSON ms (× JSON.parse) | YAML | ' +
      'parseManifest, YAML (the yaml package) ms (× JSON.parse) |',
    '|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

function nginxTableText(runs: NginxResult[]): string {
  const rows = runs.map((n) =>
    n.skipped !== undefined
      ? `| ${count(n.routes)} | ${n.skipped} | | |`
      : tableRow([
          count(n.routes),
          `${(n.confBytes / 2 ** 20).toFixed(2)} MB`,
          `${ms(median(n.checkMs))} (${spread(n.checkMs)})`,
          `**${ms(median(n.applyMs))}** (${spread(n.applyMs)})`,
        ]),
  );
  return [
    ...tableHeader([
      'routes',
      'nginx.conf',
      'nginx -t ms, median (min–max)',
      'apply until live ms: render, nginx -t, install, reload, confirmed (median, min–max)',
    ]),
    ...rows,
  ].join('\n');
}

function summarizeStalls(rows: StallRow[]): StallSummary[] {
  const groups = new Map<string, StallSummary>();
  for (const row of rows) {
    const key = `${row.pods} ${row.source} ${row.scenario}`;
    const group = groups.get(key) ?? { pods: row.pods, source: row.source, scenario: row.scenario, runs: [] };
    group.runs.push(row);
    groups.set(key, group);
  }
  return [...groups.values()];
}

const lowMedHigh = (values: number[]): string =>
  `${ms(Math.min(...values))} / ${ms(median(values))} / ${ms(Math.max(...values))}`;

function stallRow({ pods, source, scenario, runs }: StallSummary): string {
  const m = (pick: (r: StallRow) => number): number => median(runs.map(pick));
  return tableRow([
    count(pods),
    source,
    scenario,
    runs.length,
    m((r) => r.answered),
    runs.reduce((n, r) => n + r.failed, 0),
    `**${lowMedHigh(runs.map((r) => r.longestGapMs))}**`,
    lowMedHigh(runs.map((r) => r.loopDelayMaxMs)),
    lowMedHigh(runs.map((r) => r.gcMaxMs)),
    m((r) => r.rebuilds),
    `${ms(m((r) => r.buildMs))} (${ms(m((r) => r.snapshotMs))})`,
    m((r) => r.buildPauses),
  ]);
}

function stallTable(summaries: StallSummary[]): string {
  return [
    ...tableHeader([
      'pods',
      'source',
      'scenario',
      'runs',
      'answers per run (median)',
      'failed requests',
      'longest gap between answers ms, least / median / most',
      'event-loop delay max ms, least / median / most',
      'longest GC pause ms, least / median / most',
      'rebuilds per run',
      "controller busy ms per run, median (of which the source's snapshot)",
      'pauses per run',
    ]),
    ...summaries.map(stallRow),
  ].join('\n');
}

/** Table + render of `pods` pods from scratch, first build in the process, against a bound. */
function fromScratchTarget(b: BuildResult, pods: string, goal: string, boundMs: number): Target {
  const cold = b.coldTableMs + b.coldRenderMs;
  return {
    target: `route table + render, ${pods} pods from scratch`,
    goal,
    measured: `${ms(cold)} ms first build, ${ms(median(warmTotals(b)))} ms warm`,
    met: cold < boundMs,
  };
}

/** The targets of the builds at 10,000 and 50,000 slim pods: from scratch, RSS and one changed pod. */
function buildTargets(builds: BuildResult[]): Target[] {
  const targets: Target[] = [];
  const at = (n: number): BuildResult | undefined => builds.find((b) => b.pods === n && b.podObjects === 'slim');
  const b10 = at(10_000);
  if (b10 !== undefined) {
    targets.push(fromScratchTarget(b10, '10,000', '< 200 ms', 200));
    const full = builds.find((b) => b.pods === 10_000 && b.podObjects === 'full');
    const whole = full === undefined ? '' : `; ${full.peakRssMiB.toFixed(0)} MB with whole pod objects`;
    targets.push({
      target: 'RSS, 10,000 pods (slim pod objects, as the cluster source keeps them)',
      goal: '< 150 MB',
      measured: `${b10.peakRssMiB.toFixed(0)} MB peak${whole}`,
      met: b10.peakRssMiB < 150,
    });
    targets.push(...changeTargets(b10));
  }
  const b50 = at(50_000);
  if (b50 !== undefined) targets.push(fromScratchTarget(b50, '50,000', '< 1 s', 1_000));
  return targets;
}

/** One changed pod among 10,000 (the changes that change something), on the event loop. */
function changeTargets(b10: BuildResult): Target[] {
  const changes = b10.changes.filter((c) => c.kind !== 'nothing changes');
  if (changes.length === 0) return [];
  const totals = changes.flatMap(changeTotals);
  const writes = changes.flatMap((c) => c.writeMs);
  return [
    {
      target: "one changed pod among 10,000: table + render + the nginx manager's hash (on the event loop)",
      goal: '< 10 ms',
      measured:
        `${ms(median(totals))} ms median, ${ms(Math.max(...totals))} ms max; ` +
        `writing the pieces and fsync, in the thread pool: ${ms(median(writes))} ms median`,
      met: median(totals) < 10,
    },
  ];
}

/** The least of each scenario's runs (noise only adds). */
const leastGap = (s: StallSummary): number => Math.min(...s.runs.map((r) => r.longestGapMs));

/** The scenario whose least gap is the longest. */
const worstOf = (summaries: StallSummary[]): StallSummary =>
  summaries.reduce((a, b) => (leastGap(b) > leastGap(a) ? b : a));

function stallTargets(stalls: StallRow[]): Target[] {
  const targets: Target[] = [];
  const summaries = summarizeStalls(stalls);
  const rebuilds = summaries.filter((s) => s.scenario !== 'idle' && s.source === 'cluster');
  if (rebuilds.length > 0) {
    const worst = worstOf(rebuilds);
    const idle = summaries.filter((s) => s.scenario === 'idle').map(leastGap);
    targets.push({
      target: 'proxy stall during a rebuild (longest gap between answers, least of the runs)',
      goal: '< 50 ms',
      measured:
        `${ms(leastGap(worst))} ms (${count(worst.pods)} pods, ${worst.scenario}); ` +
        `with nothing rebuilt: ${idle.map(ms).join(', ')} ms`,
      met: leastGap(worst) < 50,
    });
  }
  const edits = summaries.filter((s) => s.scenario !== 'idle' && s.source !== 'cluster');
  if (edits.length > 0) {
    const worst = worstOf(edits);
    targets.push({
      target:
        `proxy stall while a manifest of ${count(MANIFEST_PODS)} pods is edited ` +
        '(read and parsed off the event loop)',
      goal: '< 50 ms',
      measured: `${ms(leastGap(worst))} ms (${worst.source}, ${worst.scenario})`,
      met: leastGap(worst) < 50,
    });
  }
  return targets;
}

function parseAndNginxTargets(parses: ParseResult[], nginx: NginxResult[]): Target[] {
  const targets: Target[] = [];
  const p10 = parses.find((p) => p.pods === 10_000);
  if (p10 !== undefined) {
    const json = median(p10.jsonParseMs);
    const times = (values: number[]): string => (median(values) / json).toFixed(1);
    targets.push({
      target: 'manifest parse, 10,000 pods, near JSON.parse',
      goal: 'near JSON.parse',
      measured: `JSON ${times(p10.manifestJsonMs)}×, YAML ${times(p10.manifestYamlMs)}× JSON.parse`,
      met: median(p10.manifestJsonMs) / json < 2,
    });
  }
  const n10 = nginx.find((n) => n.routes === 10_000 && n.skipped === undefined);
  if (n10 !== undefined) {
    targets.push({
      target: 'nginx reload until live, 10,000 routes',
      goal: '< 3 s',
      measured: `${ms(median(n10.applyMs))} ms`,
      met: median(n10.applyMs) < 3_000,
    });
  }
  return targets;
}

/** Everything measured, each kind in its own fresh children. */
interface Measured {
  builds: BuildResult[];
  parses: ParseResult[];
  nginx: NginxResult[];
  stalls: StallRow[];
}

function targetsOf({ builds, parses, nginx, stalls }: Measured): Target[] {
  return [...buildTargets(builds), ...stallTargets(stalls), ...parseAndNginxTargets(parses, nginx)];
}

async function measureBuilds(entry: string): Promise<BuildResult[]> {
  const builds: BuildResult[] = [];
  for (const pods of PLAN.buildSizes) {
    const repeats = pods >= 50_000 ? Math.min(3, PLAN.repeats) : PLAN.repeats;
    const taskArgs = ['build', '--pods', String(pods), '--repeats', String(repeats)];
    if (pods === CHANGES_AT) taskArgs.push('--changes');
    builds.push(await runTask<BuildResult>(entry, taskArgs));
  }
  for (const pods of PLAN.fullPodsAt) {
    const taskArgs = ['build', '--pods', String(pods), '--repeats', String(PLAN.repeats), '--full-pods'];
    builds.push(await runTask<BuildResult>(entry, taskArgs));
  }
  return builds;
}

async function measureParses(entry: string): Promise<ParseResult[]> {
  const parses: ParseResult[] = [];
  for (const pods of PLAN.parseSizes) {
    const yaml = pods <= PLAN.yamlUpTo ? [] : ['--no-yaml'];
    parses.push(await runTask<ParseResult>(entry, ['parse', '--pods', String(pods), ...yaml]));
  }
  return parses;
}

async function measureNginx(entry: string): Promise<NginxResult[]> {
  const nginx: NginxResult[] = [];
  for (const routes of PLAN.nginxRoutes) {
    const taskArgs = ['nginx', '--routes', String(routes), '--repeats', String(PLAN.nginxRepeats)];
    nginx.push(await runTask<NginxResult>(entry, taskArgs));
  }
  return nginx;
}

async function measureStalls(entry: string): Promise<StallRow[]> {
  const stalls: StallRow[] = [];
  for (const pods of PLAN.stall) {
    const scenarios =
      pods >= 50_000
        ? ['idle', 'first list', 'one pod changes', 'relist, nothing changed', 'relist, every pod changed']
        : ['idle', 'one pod changes', 'relist, nothing changed', 'relist, every pod changed'];
    const repeated = Array.from({ length: PLAN.stallRepeats }, () => scenarios).flat();
    stalls.push(...(await measureStall(entry, pods, repeated)));
  }
  for (const format of PLAN.manifests) {
    const scenarios = QUICK
      ? ['manifest edit, one pod changes']
      : ['idle', 'manifest edit, one pod changes', 'manifest rewritten, every pod changed'];
    const repeated = Array.from({ length: PLAN.manifestRepeats }, () => scenarios).flat();
    stalls.push(...(await measureStall(entry, MANIFEST_PODS, repeated, format)));
  }
  return stalls;
}

// The sections' prose, one paragraph each.

const BUILDS_TEXT =
  'Pods with 2 hosts and 2 paths of their own (4 routes each), 100 per namespace, every other namespace locked ' +
  'by an API key; "slim" pod objects are what the Kubernetes source keeps of each pod ' +
  '(src/sources/slim-objects.ts), "full" ones what the API server sends. "Table" is IncrementalRouteTable.update ' +
  'from empty, "render" IncrementalNginxRenderer.pieces from empty: the config as UTF-8 pieces (chunks of ' +
  'blocks), never joined into one string — what the router runs; the nginx manager then hashes every piece once ' +
  '(its own column). The reference functions are shown for comparison (their output is checked equal). ' +
  "Peak RSS is the process's maximum resident set after the first build, render and hash, pods included.";

const CHANGES_TEXT =
  'Each change applied to the builder and renderer of the first build, one after the other, and handled as the ' +
  'nginx manager handles a table: rendered with its runtime (status server with the version placeholder), ' +
  "versioned (SHA-256 of the pieces that changed, then of the pieces' hashes; nginx/conf-pieces.ts), written " +
  'with writev to a new file and fsynced. The first three run on the event loop; the write runs in the thread pool.';

const NGINX_TEXT =
  'One server block and one upstream (two pods) per route, through the nginx data plane (nginx/process.ts) as ' +
  '`run` wires it; each apply changes every upstream, from a running nginx.';

const STALL_TEXT =
  `The in-process proxy and the controller in one process, HOLD_OFF_MS=0, logging at info; ${CONCURRENCY} ` +
  'clients in another process send requests back to back on kept-alive connections to one route. Source ' +
  '"cluster": an in-memory source that hands out slim pods as the Kubernetes source does (a copy of its objects ' +
  'in the order it keeps them). Source "manifest": the manifest source (src/sources/manifest-source.ts) on a ' +
  `file of ${count(MANIFEST_PODS)} whole pods and their Secrets, as kubectl prints them, rewritten whole; its ` +
  'worker thread reads and parses the file. A window runs from the change (for a manifest, the write of the ' +
  'file) until the proxy serves the new table. "Relist" hands over new objects for every pod, as a list after ' +
  '410 Gone does; parsing the list itself is not included. ' +
  `Each cluster scenario runs ${PLAN.stallRepeats} times, each manifest one ${PLAN.manifestRepeats}: on a ` +
  'shared machine a process can wait for a CPU as long as any stall, so the least of the runs is the figure for ' +
  'the code, and "nothing rebuilt" shows the noise floor.';

function markdownOf(measured: Measured, targets: Target[], seconds: number): string {
  const { builds, parses, nginx, stalls } = measured;
  const b10 = builds.find((b) => b.pods === CHANGES_AT && b.podObjects === 'slim');
  return [
    `Mode: ${QUICK ? 'quick' : 'full'}; took ${seconds.toFixed(0)} s. ` +
      'Every measurement ran in a fresh plain-node process on the compiled project; ' +
      'times are wall-clock milliseconds.',
    '',
    '## Targets',
    '',
    ...targetsTable(targets),
    '',
    '## Route table and nginx.conf from scratch',
    '',
    BUILDS_TEXT,
    '',
    buildTable(builds),
    '',
    ...(b10 !== undefined && b10.changes.length > 0
      ? ['## One changed pod among 10,000', '', CHANGES_TEXT, '', changesTable(b10), '']
      : []),
    '## Manifest parsing',
    '',
    'A v1 List of the same pods and their Secrets, as `kubectl get pods,secrets -A -o json` (4-space indent) and ' +
      `\`-o yaml\` print it (YAML up to ${count(PLAN.yamlUpTo)} pods); median of 3 runs. ` +
      'JSON is read with JSON.parse, YAML with the yaml package.',
    '',
    parseTable(parses),
    '',
    '## nginx -t and reload until live',
    '',
    NGINX_TEXT,
    '',
    nginxTableText(nginx),
    '',
    '## Proxy stall while tables are rebuilt',
    '',
    STALL_TEXT,
    '',
    stallTable(summarizeStalls(stalls)),
    '',
  ].join('\n');
}

function chartsOf({ builds, parses, stalls }: Measured): Chart[] {
  return [
    {
      title: 'Route table + nginx.conf from scratch, first build (ms)',
      unit: 'ms',
      bars: builds
        .filter((b) => b.podObjects === 'slim')
        .map((b) => ({ label: `${count(b.pods)} pods`, value: b.coldTableMs + b.coldRenderMs })),
    },
    {
      title: 'Manifest parsing, 10,000 pods (ms)',
      unit: 'ms',
      bars: parses
        .filter((p) => p.pods === 10_000)
        .flatMap((p) => [
          { label: 'JSON.parse', value: median(p.jsonParseMs) },
          { label: 'parseManifest, JSON', value: median(p.manifestJsonMs) },
          { label: 'parseManifest, YAML', value: median(p.manifestYamlMs) },
        ]),
    },
    {
      title: 'Longest gap between proxy answers during a rebuild, least of the runs (ms)',
      unit: 'ms',
      bars: summarizeStalls(stalls).map((s) => ({
        label: `${count(s.pods)} ${s.source}: ${s.scenario}`,
        value: leastGap(s),
      })),
    },
  ];
}

async function main(): Promise<void> {
  const started = performance.now();
  const dir = await mkdtemp(join(tmpdir(), 'k8s-router-bench-build-'));
  try {
    log('compiling the project (tsc)');
    const entry = await compile(dir);
    const builds = await measureBuilds(entry);
    const parses = await measureParses(entry);
    const nginx = await measureNginx(entry);
    const measured: Measured = { builds, parses, nginx, stalls: await measureStalls(entry) };
    const targets = targetsOf(measured);
    const written = writeReport({
      name: 'control-plane',
      title: 'Control plane: route table, nginx.conf, manifests, nginx reloads, proxy stall',
      command: invocation('bench/control-plane.ts'),
      results: { quick: QUICK, targets, ...measured },
      markdown: markdownOf(measured, targets, (performance.now() - started) / 1000),
      charts: chartsOf(measured),
    });
    log(`wrote ${written.join(', ')}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
