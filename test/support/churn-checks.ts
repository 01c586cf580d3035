import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { ChurnReport } from './churn.js';

/** Prints a churn run's figures and asserts what must hold: not one request lost on the stable hosts. */
export function checkChurn(t: TestContext, report: ChurnReport): void {
  const { reloadMs } = report;
  const reloadTimes = reloadMs ? ` (ms: median ${reloadMs.median}, p95 ${reloadMs.p95}, max ${reloadMs.max})` : '';
  t.diagnostic(
    `${report.plane}: ${report.changes} pod changes in ${report.seconds.toFixed(1)} s, ` +
      `${report.tableChanges} table changes, ` +
      `${report.reloads} nginx reloads${reloadTimes}` +
      `, ${report.sends} tables sent to dynamic nginx`,
  );
  for (const [name, s] of Object.entries(report.load)) {
    t.diagnostic(
      `  ${name}: ${s.requests} requests (${s.perSecond}/s), ${s.ok} 2xx, ` +
        `non-2xx ${JSON.stringify(s.non2xx)}, refused ${s.refused}, ` +
        `dropped ${s.droppedBeforeAnyByte} + ${s.droppedMidResponse} mid-response, resent ${s.resent}; ` +
        `pods ${Object.keys(s.pods).length}`,
    );
    for (const sample of s.samples) t.diagnostic(`    ${sample}`);
  }
  for (const [name, s] of Object.entries(report.load)) {
    assert.ok(s.requests > 0, `${name}: no request was sent`);
    assert.deepEqual(
      {
        non2xx: s.non2xx,
        refused: s.refused,
        dropped: s.droppedBeforeAnyByte,
        droppedMidResponse: s.droppedMidResponse,
      },
      { non2xx: {}, refused: 0, dropped: 0, droppedMidResponse: 0 },
      `${name}: every request answered 2xx`,
    );
    if (name.includes('new connection'))
      assert.equal(s.resent, 0, `${name}: nothing to resend without kept-alive connections`);
  }
  for (const [host, { served, expected }] of Object.entries(report.final))
    assert.deepEqual(served, expected, `${host} is served by its ready pods once quiet`);
  assert.ok(report.tableChanges > 0, 'the table changed');
  if (report.plane === 'nginx documented') assert.ok(report.reloads > 0, 'nginx reloaded');
  if (report.plane === 'nginx dynamic') {
    assert.equal(report.reloads, 0, 'dynamic nginx takes every change without a reload');
    assert.ok(report.sends > 0, 'tables were sent to nginx');
  }
}
