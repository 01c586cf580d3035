// `npm run bench` (everything) and `npm run bench -- --quick` (the same benchmarks, smaller,
// in a few minutes): runs each benchmark script in its own process, one after the
// other, then writes bench/results/summary.md (every figure that has a target,
// against it) and puts the same table in the README between its bench-summary markers.
//
// A benchmark reports its targets as `results.targets` in bench/results/<name>.json: rows
// of { target, goal, measured, met } (see bench/README.md). One that reports none is
// listed with a link to its own report. `--only a,b` runs those and takes the others'
// recorded results; `--summarize` runs none and writes the summary from what is recorded.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { findNginxBinary } from '../nginx/binary.js';
import { metCell, tableHeader, tableRow } from './lib/markdown.js';
import { describeMachine, machineLine, RESULTS_DIR, type Target } from './lib/report.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    summarize: { type: 'boolean', default: false },
  },
});
if (args.summarize && (args.only !== undefined || args.quick)) {
  process.stderr.write('bench: --summarize runs nothing, so it takes neither --only nor --quick\n');
  process.exit(2);
}
/** Why a benchmark is not run this time. */
const LEFT_OUT = args.summarize ? 'not run (--summarize)' : 'left out by --only';
const REPO = new URL('..', import.meta.url).pathname;
const README = join(REPO, 'README.md');
const START_MARKER = '<!-- bench-summary:start -->';
const END_MARKER = '<!-- bench-summary:end -->';

interface Benchmark {
  name: string;
  script: string;
  /** Tools it cannot run without, and how to get them. */
  needs: Array<{ tool: string; found: () => boolean; install: string }>;
  /** Left out of --quick runs, which must stay short (a few minutes). */
  fullOnly?: boolean;
}

const wrk = {
  tool: 'wrk',
  found: () => spawnSync('wrk', ['-v']).error === undefined,
  install: 'apt-get install -y wrk',
};
const nginx = { tool: 'nginx', found: () => findNginxBinary('nginx') !== null, install: 'apt-get install -y nginx' };

const BENCHMARKS: Benchmark[] = [
  { name: 'data-plane', script: 'bench/data-plane.ts', needs: [wrk, nginx] },
  { name: 'control-plane', script: 'bench/control-plane.ts', needs: [nginx] },
  { name: 'event-latency', script: 'bench/event-latency.ts', needs: [nginx] },
  { name: 'dynamic-apply', script: 'bench/dynamic-apply.ts', needs: [nginx] },
  { name: 'big-cluster', script: 'bench/big-cluster.ts', needs: [], fullOnly: true },
  { name: 'nginx-reload', script: 'bench/nginx-reload.ts', needs: [nginx], fullOnly: true },
];

interface Outcome {
  name: string;
  status: 'ran' | 'recorded earlier' | 'failed' | 'not run' | 'missing';
  detail: string;
  seconds: number;
  targets: Target[] | null;
}

function say(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

function run(benchmark: Benchmark): Promise<Outcome> {
  const base = { name: benchmark.name, seconds: 0, targets: null };
  if (!existsSync(join(REPO, benchmark.script))) {
    return Promise.resolve({
      ...base,
      status: 'missing',
      detail: `${benchmark.script} does not exist in this checkout: no ${benchmark.name} figures`,
    });
  }
  const lacking = benchmark.needs.filter((need) => !need.found());
  if (lacking.length > 0) {
    const how = lacking.map((need) => `${need.tool} is not installed (\`${need.install}\`)`).join('; ');
    return Promise.resolve({ ...base, status: 'not run', detail: how });
  }
  const argv = ['--import', 'tsx', benchmark.script, ...(args.quick ? ['--quick'] : [])];
  say(`${benchmark.name}: node ${argv.join(' ')}`);
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, argv, { cwd: REPO, stdio: 'inherit' });
    child.on('exit', (code, signal) => {
      const seconds = (Date.now() - started) / 1000;
      if (code !== 0) {
        resolve({ ...base, seconds, status: 'failed', detail: `exited with ${code ?? signal}` });
        return;
      }
      resolve({
        ...base,
        seconds,
        status: 'ran',
        detail: `[${benchmark.name}.md](${benchmark.name}.md)`,
        targets: targetsOf(benchmark.name, started),
      });
    });
  });
}

function isTarget(row: unknown): row is Target {
  const t = row as Partial<Target> | null;
  return (
    typeof t === 'object' &&
    t !== null &&
    typeof t.target === 'string' &&
    typeof t.goal === 'string' &&
    typeof t.measured === 'string' &&
    typeof t.met === 'boolean'
  );
}

/** `results.targets` of a benchmark's JSON; rows of another shape are a bug in that benchmark, and said so. */
function targetRows(name: string, targets: unknown): Target[] | null {
  if (!Array.isArray(targets)) return null;
  const bad = targets.filter((row) => !isTarget(row));
  if (bad.length > 0) {
    say(
      `${name}: ${bad.length} of its targets are not rows of { target, goal, measured, met }, ` +
        `e.g. ${JSON.stringify(bad[0])}: left out of the summary`,
    );
    return null;
  }
  return targets as Target[];
}

/** The targets a benchmark recorded in this run, or null when it records none. */
function targetsOf(name: string, since: number): Target[] | null {
  const file = join(RESULTS_DIR, `${name}.json`);
  if (!existsSync(file) || statSync(file).mtimeMs < since) return null;
  return targetRows(
    name,
    (JSON.parse(readFileSync(file, 'utf8')) as { results?: { targets?: unknown } }).results?.targets,
  );
}

/**
 * A benchmark left out by --only: what its last recorded run says, marked as such, with
 * that run's command and machine line (recorded by lib/report.ts), so a summary never
 * passes off older figures as this run's.
 */
function recordedEarlier(benchmark: Benchmark): Outcome {
  const file = join(RESULTS_DIR, `${benchmark.name}.json`);
  const base = { name: benchmark.name, seconds: 0, targets: null };
  if (!existsSync(file))
    return { ...base, status: 'not run', detail: `${LEFT_OUT}, and no recorded results in ${benchmark.name}.json` };
  const recorded = JSON.parse(readFileSync(file, 'utf8')) as {
    command?: string;
    machine?: { date?: string; commit?: string };
    results?: { targets?: unknown };
  };
  const date = recorded.machine?.date?.slice(0, 16) ?? 'unknown date';
  const when = `${date}, commit ${recorded.machine?.commit ?? 'unknown'}`;
  return {
    ...base,
    status: 'recorded earlier',
    detail: `[${benchmark.name}.md](${benchmark.name}.md), \`${recorded.command ?? 'unknown command'}\` (${when})`,
    targets: targetRows(benchmark.name, recorded.results?.targets),
  };
}

/** How this run was started, as a reader would type it again. */
function command(): string {
  const options = [
    ...(args.quick ? ['--quick'] : []),
    ...(args.only === undefined ? [] : [`--only ${args.only}`]),
    ...(args.summarize ? ['--summarize'] : []),
  ];
  return `npm run bench${options.length > 0 ? ` -- ${options.join(' ')}` : ''}`;
}

function targetsTable(outcomes: Outcome[]): string {
  const rows = outcomes.flatMap((o) => {
    if (o.targets !== null)
      return o.targets.map((t) => tableRow([o.name, t.target, t.goal, t.measured, metCell(t.met)]));
    if (o.status === 'ran' || o.status === 'recorded earlier')
      return [`| ${o.name} | see [${o.name}.md](bench/results/${o.name}.md) | | | |`];
    return [`| ${o.name} | ${o.status}: ${o.detail} | | | |`];
  });
  return [...tableHeader(['benchmark', 'target', 'goal', 'measured', 'met']), ...rows].join('\n');
}

function summary(outcomes: Outcome[], seconds: number): string {
  const machine = describeMachine();
  const how = args.summarize
    ? 'nothing run: the results recorded in bench/results/'
    : `${args.quick ? 'quick' : 'full'}; ${seconds.toFixed(0)} s`;
  return [
    '# Benchmark summary',
    '',
    `Command: \`${command()}\` (${how})`,
    '',
    `Machine: ${machineLine(machine)}`,
    '',
    '## Against the targets',
    '',
    // Links in the table are relative to the README; from here they are one level up.
    targetsTable(outcomes).replaceAll('](bench/results/', ']('),
    '',
    '## Runs',
    '',
    '| benchmark | status | seconds | report |',
    '|---|---|---|---|',
    ...outcomes.map((o) => `| ${o.name} | ${o.status} | ${o.seconds.toFixed(0)} | ${o.detail} |`),
    '',
  ].join('\n');
}

/** The README's summary section, between its markers, as the new table. */
function updateReadme(outcomes: Outcome[]): boolean {
  const text = readFileSync(README, 'utf8');
  const start = text.indexOf(START_MARKER);
  const end = text.indexOf(END_MARKER);
  if (start < 0 || end < start) return false;
  const machine = describeMachine();
  const day = machine.date.slice(0, 10);
  const section = [
    START_MARKER,
    args.summarize
      ? `The results recorded in bench/results/, put together with \`${command()}\` on ${day}; ` +
        "each benchmark's command, date, machine and commit are in " +
        `[bench/results/summary.md](bench/results/summary.md) and its own report.`
      : `Recorded with \`${command()}\` on ${day} ` +
        `(${machine.cores} × ${machine.cpu}, Node ${machine.node}, commit ${machine.commit ?? 'unknown'}); ` +
        'all figures in [bench/results/summary.md](bench/results/summary.md).',
    '',
    targetsTable(outcomes),
    END_MARKER,
  ].join('\n');
  writeFileSync(README, `${text.slice(0, start)}${section}${text.slice(end + END_MARKER.length)}`);
  return true;
}

/** The benchmarks --only names (all when it is not given); an unknown name is an error. */
function chosen(): Set<string> {
  const all = BENCHMARKS.map((b) => b.name);
  if (args.summarize) return new Set();
  if (args.only === undefined) return new Set(all);
  const names = args.only
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n.length > 0);
  const unknown = names.filter((n) => !all.includes(n));
  if (names.length === 0 || unknown.length > 0) {
    const notOne = unknown.length > 0 ? ` (not one: ${unknown.join(', ')})` : '';
    say(`--only takes benchmark names separated by commas, from: ${all.join(', ')}${notOne}`);
    process.exit(2);
  }
  return new Set(names);
}

async function main(): Promise<void> {
  const started = Date.now();
  const outcomes: Outcome[] = [];
  const only = chosen();
  for (const benchmark of BENCHMARKS) {
    if (!only.has(benchmark.name)) {
      const outcome = recordedEarlier(benchmark);
      const what =
        outcome.status === 'not run' ? outcome.detail : `its recorded results (${outcome.detail}) go into the summary`;
      say(`${benchmark.name}: ${LEFT_OUT}; ${what}`);
      outcomes.push(outcome);
      continue;
    }
    if (args.quick && benchmark.fullOnly === true) {
      say(`${benchmark.name}: left out of --quick (run it alone with: node --import tsx ${benchmark.script} --quick)`);
      continue;
    }
    const outcome = await run(benchmark);
    if (outcome.status !== 'ran') say(`${benchmark.name}: ${outcome.status}: ${outcome.detail}`);
    outcomes.push(outcome);
  }
  const seconds = (Date.now() - started) / 1000;
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, 'summary.md'), summary(outcomes, seconds));
  say(`wrote ${join(RESULTS_DIR, 'summary.md')}`);
  if (!updateReadme(outcomes)) say(`README.md has no ${START_MARKER} ... ${END_MARKER} section to update`);
  say(`all done in ${seconds.toFixed(0)} s`);
  // A benchmark that failed, or could not run for want of a tool, fails the run.
  if (outcomes.some((o) => o.status === 'failed' || o.status === 'not run')) process.exitCode = 1;
}

await main();
