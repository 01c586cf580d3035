// Where every benchmark records what it measured: bench/results/<name>.json (the numbers),
// <name>.md (a table a person reads) and, when there is something to compare, <name>.svg
// (a bar chart). Each carries the machine, the versions and the exact command, because a
// figure without them cannot be compared with anything.

import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, release } from 'node:os';
import { join } from 'node:path';
import { findNginxBinary } from '../../nginx/binary.js';

export const RESULTS_DIR = new URL('../results/', import.meta.url).pathname;

export interface Machine {
  date: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  nginx: string | null;
  wrk: string | null;
  commit: string | null;
}

function firstLine(command: string, args: string[]): string | null {
  // nginx -v and wrk -v print their version on standard error (wrk exits 1 doing so).
  const run = spawnSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (run.error !== undefined) return null;
  const text = `${run.stdout ?? ''}${run.stderr ?? ''}`.split('\n')[0]?.trim();
  return text || null;
}

export function describeMachine(): Machine {
  return {
    date: new Date().toISOString(),
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    // Debian keeps nginx in /usr/sbin, which is not on every PATH.
    nginx: firstLine(findNginxBinary('nginx') ?? 'nginx', ['-v']),
    wrk: firstLine('wrk', ['-v']),
    commit: commitMeasured(),
  };
}

/**
 * The commit the code measured comes from, marked when the checkout has changes outside
 * bench/results/ that are not committed: then the figures are of code no commit holds.
 */
function commitMeasured(): string | null {
  const head = firstLine('git', ['rev-parse', '--short', 'HEAD']);
  if (head === null) return null;
  const status = spawnSync('git', ['status', '--porcelain', '--', '.', ':(exclude)bench/results'], {
    encoding: 'utf8',
  });
  return status.status === 0 && status.stdout.trim() !== '' ? `${head} with uncommitted changes` : head;
}

/** The command line that produced a result, as a person would type it again. */
export function invocation(script: string): string {
  const args = process.argv.slice(2).map((a) => (/^[-\w./=:,]+$/.test(a) ? a : JSON.stringify(a)));
  return ['node --import tsx', script, ...args].join(' ');
}

/** A row of `results.targets`: what bench/run.ts puts in the summary and the README, against its goal. */
export interface Target {
  target: string;
  goal: string;
  measured: string;
  met: boolean;
}

/** The machine in one line, as every report and the summary print it under the command. */
export function machineLine(machine: Machine): string {
  return (
    `${machine.date.slice(0, 10)}, ${machine.cores} × ${machine.cpu}, ${machine.memoryGiB} GiB, ` +
    `Linux ${machine.kernel}, Node ${machine.node}, ${machine.nginx ?? 'no nginx'}, ` +
    `${machine.wrk ?? 'no wrk'}, commit ${machine.commit ?? 'unknown'}`
  );
}

export interface Bar {
  label: string;
  value: number;
}

export interface Chart {
  title: string;
  unit: string;
  bars: Bar[];
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A horizontal bar chart, plain SVG, no script: readable on GitHub and in a browser. */
export function barChartSvg(chart: Chart, footer: string): string {
  const rowHeight = 26;
  const labelWidth = 330;
  const barWidth = 420;
  const top = 40;
  const height = top + chart.bars.length * rowHeight + 40;
  const width = labelWidth + barWidth + 110;
  const max = Math.max(...chart.bars.map((b) => b.value), 1e-9);
  const rows = chart.bars.map((b, i) => {
    const y = top + i * rowHeight;
    const w = Math.max(1, Math.round((b.value / max) * barWidth));
    const value = b.value >= 100 ? Math.round(b.value).toLocaleString('en-US') : b.value.toFixed(2);
    return [
      `<text x="${labelWidth - 8}" y="${y + 17}" text-anchor="end">${escapeXml(b.label)}</text>`,
      `<rect x="${labelWidth}" y="${y + 4}" width="${w}" height="${rowHeight - 8}" fill="#3b6ea5"/>`,
      `<text x="${labelWidth + w + 6}" y="${y + 17}">${escapeXml(value)} ${escapeXml(chart.unit)}</text>`,
    ].join('');
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      'font-family="sans-serif" font-size="13">',
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="24" font-size="15" font-weight="bold">${escapeXml(chart.title)}</text>`,
    ...rows,
    `<text x="10" y="${height - 12}" font-size="11" fill="#555">${escapeXml(footer)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

export interface Report {
  /** File name stem under bench/results/. */
  name: string;
  title: string;
  /** The exact command (see invocation()). */
  command: string;
  /** Everything measured, as data. */
  results: unknown;
  /** The body of the Markdown report (tables, notes), without the header this adds. */
  markdown: string;
  charts?: Chart[];
}

/** Writes <name>.json, <name>.md and one <name>[-N].svg per chart; returns the paths written. */
export function writeReport(report: Report, machine: Machine = describeMachine()): string[] {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const written: string[] = [];
  const write = (file: string, text: string): void => {
    const path = join(RESULTS_DIR, file);
    writeFileSync(path, text);
    written.push(path);
  };
  write(
    `${report.name}.json`,
    `${JSON.stringify({ title: report.title, command: report.command, machine, results: report.results }, null, 2)}\n`,
  );
  const machineText = machineLine(machine);
  const charts = report.charts ?? [];
  const svgNames = charts.map((_, i) => (charts.length === 1 ? `${report.name}.svg` : `${report.name}-${i + 1}.svg`));
  charts.forEach((chart, i) => write(svgNames[i] as string, barChartSvg(chart, machineText)));
  const images = svgNames.map((file, i) => `![${charts[i]?.title ?? ''}](${file})`).join('\n\n');
  write(
    `${report.name}.md`,
    [
      `# ${report.title}`,
      '',
      `Command: \`${report.command}\``,
      '',
      `Machine: ${machineText}`,
      '',
      report.markdown.trim(),
      '',
      images,
      '',
    ]
      .join('\n')
      .replace(/\n{3,}/g, '\n\n'),
  );
  return written;
}
