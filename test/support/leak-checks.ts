import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { LeakReport, Usage } from './leaks.js';

const show = (u: Usage): string => `${u.fds} fds, RSS ${(u.rssKiB / 1024).toFixed(1)} MiB`;

/**
 * Prints the figures and asserts that the router's open file descriptors came back to
 * their level after warm-up, give or take `fdSlack`, and (when `rssTolerance` is given)
 * that its RSS stayed within that fraction of it.
 */
export function checkLeaks(t: TestContext, report: LeakReport, limits: { fdSlack: number; fdTolerance?: number; rssTolerance?: number }): void {
  t.diagnostic(
    `${report.backend}: ${report.connections} WebSocket connects and disconnects (${report.failedConnections} failed) and ${report.changes} object changes ` +
      `in ${report.seconds.toFixed(1)} s (${report.tableChanges} table changes, ${report.reloads} nginx reloads)`,
  );
  t.diagnostic(`  router after warm-up: ${show(report.afterWarmUp)}; at the end: ${show(report.atEnd)}`);
  if (report.nginx) t.diagnostic(`  nginx (master and workers) after warm-up: ${show(report.nginx.afterWarmUp)}; at the end: ${show(report.nginx.atEnd)}`);
  assert.equal(report.failedConnections, 0, 'every WebSocket exchanged its message');
  const { afterWarmUp: before, atEnd: after } = report;
  const fdLimit = Math.max(before.fds + limits.fdSlack, Math.floor(before.fds * (1 + (limits.fdTolerance ?? 0))));
  assert.ok(after.fds <= fdLimit, `open fds grew from ${before.fds} to ${after.fds} (limit ${fdLimit})`);
  if (limits.rssTolerance !== undefined) {
    const rssLimit = before.rssKiB * (1 + limits.rssTolerance);
    assert.ok(after.rssKiB <= rssLimit, `RSS grew from ${before.rssKiB} KiB to ${after.rssKiB} KiB (limit ${Math.round(rssLimit)} KiB)`);
  }
}
