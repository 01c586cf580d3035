import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { LeakReport, RouterUsage, Usage } from './leaks.js';

const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;
const show = (u: Usage): string => `${u.fds} fds, RSS ${mib(u.rssKiB)}`;
const showRouter = (u: RouterUsage): string =>
  `${show(u)}; after a full GC: RSS ${mib(u.afterGc.rssKiB)}, JS heap in use ${mib(u.afterGc.heapUsedKiB)}`;

/**
 * Prints the figures and asserts that the router's open file descriptors came back to
 * their level after warm-up, give or take `fdSlack`, and (when `rssTolerance` is given)
 * that its RSS and its JS heap in use, both after a full garbage collection, stayed
 * within that fraction of it. (Without the collection V8 may hold on to garbage for a
 * while: RSS as found is printed, not judged.)
 */
export function checkLeaks(
  t: TestContext,
  report: LeakReport,
  limits: { fdSlack: number; fdTolerance?: number; rssTolerance?: number },
): void {
  t.diagnostic(
    `${report.backend}: ${report.connections} WebSocket connects and disconnects ` +
      `(${report.failedConnections} failed) and ${report.changes} object changes ` +
      `in ${report.seconds.toFixed(1)} s (${report.tableChanges} table changes, ${report.reloads} nginx reloads)`,
  );
  t.diagnostic(`  router after warm-up: ${showRouter(report.afterWarmUp)}`);
  t.diagnostic(`  router at the end:     ${showRouter(report.atEnd)}`);
  for (const line of report.routerTrouble.slice(0, 20)) t.diagnostic(`  router said: ${line}`);
  if (report.nginx)
    t.diagnostic(
      `  nginx (master and workers) after warm-up: ${show(report.nginx.afterWarmUp)}; ` +
        `at the end: ${show(report.nginx.atEnd)}`,
    );
  assert.equal(
    report.failedConnections,
    0,
    `every WebSocket exchanged its message; failed: ${JSON.stringify(report.failures)}`,
  );
  const { afterWarmUp: before, atEnd: after } = report;
  const fdLimit = Math.max(before.fds + limits.fdSlack, Math.floor(before.fds * (1 + (limits.fdTolerance ?? 0))));
  assert.ok(after.fds <= fdLimit, `open fds grew from ${before.fds} to ${after.fds} (limit ${fdLimit})`);
  if (limits.rssTolerance !== undefined) {
    for (const [what, from, to] of [
      ['RSS after a full GC', before.afterGc.rssKiB, after.afterGc.rssKiB],
      ['JS heap in use after a full GC', before.afterGc.heapUsedKiB, after.afterGc.heapUsedKiB],
    ] as const) {
      const limit = from * (1 + limits.rssTolerance);
      assert.ok(to <= limit, `${what} grew from ${from} KiB to ${to} KiB (limit ${Math.round(limit)} KiB)`);
    }
  }
}
