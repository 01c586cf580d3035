// Markdown tables as the reports print them: `| a | b |` rows under a header and a `|---|` line.

import type { Target } from './report.js';

/** One row: the cells between pipes, each with one space either side. */
export function tableRow(cells: readonly (string | number)[]): string {
  return `| ${cells.join(' | ')} |`;
}

/** A header row and the line under it, one `---` per column. */
export function tableHeader(columns: readonly string[]): string[] {
  return [tableRow(columns), `|${columns.map(() => '---').join('|')}|`];
}

/** A target met prints as `yes`, one missed in bold, so that it stands out. */
export const metCell = (met: boolean): string => (met ? 'yes' : '**no**');

/** The targets section's table: one row per target, against its goal. */
export function targetsTable(targets: readonly Target[]): string[] {
  return [
    ...tableHeader(['target', 'goal', 'measured', 'met']),
    ...targets.map((t) => tableRow([t.target, t.goal, t.measured, metCell(t.met)])),
  ];
}
