// Where an nginx reload spends its time with many routes.
//
//   node --import tsx bench/nginx-reload.ts [--routes 10000] [--reloads 5] [--quick]
//
// Builds a table of N routes, each its own host with one path and two pods (so one server
// block and one upstream per route: the case whose reload first took about 9 s), starts the
// nginx data plane on it in a temp prefix, then applies a slightly different table
// (one route gains or loses a pod) `--reloads` times. For each reload it records the
// manager's own breakdown (lastOutcome().lastApplyTimings): render, write (synced), the
// `nginx -t` check, load (from SIGHUP until a new worker answers the status server with
// the new version: nginx parsing the config and starting workers), and retire (until no
// old worker accepts). "live" is everything up to load, when new connections get the new
// config. It also times a bare `nginx -t` on the same config, and the same with the
// upstream blocks taken out, to separate nginx's upstream registration from the rest of
// its parse. --quick: 2,000 routes, 2 reloads.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { defaultConfig } from '../src/core/config.js';
import type { Pod } from '../src/core/kube-objects.js';
import { buildRouteTable, type RouteTable } from '../src/core/route-table.js';
import { createNginxDataPlane, type ApplyTimings } from '../nginx/process.js';
import { renderNginxConf } from '../nginx/render.js';
import { pickFreeLoopbackPort } from '../nginx/status.js';
import { pod } from '../test/support/objects.js';
import { NGINX_BINARY } from '../test/support/nginx-check.js';
import { tableHeader, tableRow } from './lib/markdown.js';
import { invocation, writeReport } from './lib/report.js';

const { values: args } = parseArgs({
  options: {
    routes: { type: 'string' },
    reloads: { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
});
const ROUTES = Number(args.routes ?? (args.quick ? 2_000 : 10_000));
const RELOADS = Number(args.reloads ?? (args.quick ? 2 : 5));

function podsFor(routes: number, extra: boolean): Pod[] {
  const pods: Pod[] = [];
  for (let i = 0; i < routes; i++) {
    const ip = (k: number): string => `10.${(i >> 8) & 255}.${i & 255}.${k}`;
    for (const k of extra && i === 0 ? [1, 2, 3] : [1, 2]) {
      pods.push(pod(`pod-${i}-${k}`, { ip: ip(k), hosts: `host-${i}.example.com`, paths: '80:/', ports: [80] }));
    }
  }
  return pods;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

/** Wall and CPU time of one `nginx -t` of `text`. */
async function timeCheck(dir: string, name: string, text: string): Promise<{ wallMs: number; cpuMs: number }> {
  const file = join(dir, name);
  await writeFile(file, text);
  const started = performance.now();
  const stderr = execFileSync(
    '/bin/sh',
    ['-c', `/usr/bin/time -f '%U %S' "$0" -t -q -p "$1" -c "$2" -e stderr 2>&1 >/dev/null`, NGINX_BINARY, dir, file],
    {
      encoding: 'utf8',
    },
  );
  const wallMs = performance.now() - started;
  const [user = 0, sys = 0] = stderr.trim().split('\n').at(-1)?.split(' ').map(Number) ?? [];
  return { wallMs, cpuMs: (user + sys) * 1000 };
}

/** CPU time (user + system) a process has used so far, in ms. */
function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

type Reload = ApplyTimings & { liveMs: number; wallMs: number; masterCpuMs: number };
const KEYS: Array<keyof Reload> = [
  'renderMs',
  'writeMs',
  'checkMs',
  'loadMs',
  'liveMs',
  'retireMs',
  'totalMs',
  'masterCpuMs',
];

/** Starts nginx on the first table and reloads it RELOADS times; with or without `nginx -t` first. */
async function reloadSeries(
  dir: string,
  tables: RouteTable[],
  config: ReturnType<typeof defaultConfig>,
  checkBeforeLoad: boolean,
): Promise<{ startMs: number; reloads: Reload[] }> {
  const nginx = createNginxDataPlane({
    nginxBinary: NGINX_BINARY,
    prefix: join(dir, checkBeforeLoad ? 'nginx-checked' : 'nginx-unchecked'),
    render: (table, runtime) => renderNginxConf(table, { ...config, runtime }),
    checkBeforeLoad,
    confirmTimeoutMs: 120_000,
    stopTimeouts: { gracefulMs: 5_000, fastMs: 2_000 },
  });
  const reloads: Reload[] = [];
  try {
    let started = performance.now();
    await nginx.apply(tables[0] as RouteTable);
    const startMs = performance.now() - started;
    for (let i = 1; i <= RELOADS; i++) {
      const master = nginx.lastOutcome().pid as number;
      const cpuBefore = cpuMsOf(master);
      started = performance.now();
      await nginx.apply(tables[i % 2] as RouteTable);
      const wallMs = performance.now() - started;
      const masterCpuMs = cpuMsOf(master) - cpuBefore;
      const t = nginx.lastOutcome().lastApplyTimings as ApplyTimings;
      reloads.push({ ...t, liveMs: t.renderMs + t.writeMs + t.checkMs + t.loadMs, wallMs, masterCpuMs });
      const rounded = JSON.stringify(reloads.at(-1), (_, v: unknown) => (typeof v === 'number' ? Math.round(v) : v));
      process.stderr.write(`${checkBeforeLoad ? 'with' : 'without'} nginx -t, reload ${i}: ${rounded}\n`);
    }
    return { startMs, reloads };
  } finally {
    await nginx.close();
  }
}

const medians = (reloads: Reload[]): Record<string, number> =>
  Object.fromEntries(KEYS.map((k) => [k, Math.round(median(reloads.map((r) => r[k])))]));

type CheckTime = Awaited<ReturnType<typeof timeCheck>>;

/** A bare `nginx -t` of the first table's config, and of the same servers without upstream blocks. */
async function checkTimes(
  dir: string,
  table: RouteTable,
  config: ReturnType<typeof defaultConfig>,
): Promise<{ whole: CheckTime; bare: CheckTime }> {
  const text = renderNginxConf(table, {
    ...config,
    runtime: {
      pidFile: join(dir, 'check.pid'),
      errorLog: join(dir, 'check.log'),
      accessLog: join(dir, 'access.log'),
      tempDir: dir,
    },
  });
  const whole = await timeCheck(dir, 'whole.conf', text);
  // The same servers without upstream blocks: each location answers itself.
  const noUpstreams = text
    .replace(/^# Upstream for [^\n]*\nupstream [^\n]* \{\n(?:[^\n]*\n)*?\}\n/gm, '')
    .replace(/^# Upstream (upstream[0-9_]+)\nproxy_pass http:\/\/\1;$/gm, 'return 200;');
  const bare = await timeCheck(dir, 'no-upstreams.conf', noUpstreams);
  return { whole, bare };
}

type Series = Awaited<ReturnType<typeof reloadSeries>>;

function markdownOf(rows: Record<string, Series>, whole: CheckTime, bare: CheckTime): string {
  return [
    `${ROUTES.toLocaleString('en-US')} routes (one host, one path and two pods each: ` +
      `one server block and one upstream per route), ${RELOADS} reloads per mode, medians in ms. ` +
      '"live" is when new connections get the new config (render + write + nginx -t + load); ' +
      '"total" also waits for the old workers to stop accepting.',
    '',
    ...tableHeader([
      'mode',
      'render',
      'write',
      'nginx -t',
      'load (SIGHUP → a new worker answers)',
      '**live**',
      'retire old workers',
      'total apply',
      'CPU of the nginx master during the reload',
    ]),
    ...Object.entries(rows).map(([name, r]) => {
      const m = medians(r.reloads);
      return tableRow([name, ...KEYS.map((k) => (k === 'liveMs' ? `**${m[k]}**` : String(m[k])))]);
    }),
    '',
    `A bare \`nginx -t\` of the same config: ${Math.round(whole.wallMs)} ms wall, ` +
      `${Math.round(whole.cpuMs)} ms CPU; with the upstream blocks taken out (locations answer themselves): ` +
      `${Math.round(bare.wallMs)} ms wall, ${Math.round(bare.cpuMs)} ms CPU.`,
  ].join('\n');
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'k8s-router-bench-reload-'));
  await chmod(dir, 0o755);
  const port = await pickFreeLoopbackPort();
  const config = defaultConfig({ port: String(port), listenAddress: '127.0.0.1' });
  const tables: RouteTable[] = [false, true].map((extra) => buildRouteTable(config, podsFor(ROUTES, extra), []));
  try {
    const checked = await reloadSeries(dir, tables, config, true);
    const unchecked = await reloadSeries(dir, tables, config, false);
    const { whole, bare } = await checkTimes(dir, tables[0] as RouteTable, config);
    const rows = {
      'with nginx -t (NGINX_TEST_CONFIG=true, the default)': checked,
      'without (NGINX_TEST_CONFIG=false)': unchecked,
    };
    const results = {
      routes: ROUTES,
      reloadsPerMode: RELOADS,
      modes: Object.fromEntries(
        Object.entries(rows).map(([name, r]) => [
          name,
          { startMs: Math.round(r.startMs), medians: medians(r.reloads), each: r.reloads },
        ]),
      ),
      nginxCheck: { whole, withoutUpstreams: bare },
    };
    const markdown = markdownOf(rows, whole, bare);
    const written = writeReport({
      name: 'nginx-reload',
      title: 'nginx reload time by phase',
      command: invocation('bench/nginx-reload.ts'),
      results,
      markdown,
      charts: Object.entries(rows).map(([name, r]) => {
        const m = medians(r.reloads);
        return {
          title: `Reload at ${ROUTES.toLocaleString('en-US')} routes, ${name}: median ms by phase`,
          unit: 'ms',
          bars: KEYS.map((k) => ({ label: k.replace(/Ms$/, ''), value: m[k] as number })),
        };
      }),
    });
    process.stdout.write(`${markdown}\n\n${written.join('\n')}\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
