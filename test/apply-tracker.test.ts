import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { trackApplies } from '../src/admin/apply-tracker.js';
import { decideReadiness, planeReports } from '../src/admin/readiness.js';
import type { RouteTable } from '../src/core/route-table.js';
import type { NginxOutcome } from '../nginx/process.js';

// The tracker records what each data plane did with the tables the controller handed it.
// nginx also retries a refused table on a timer of its own: once its report says it caught
// up, the tracker (and so /readyz and /status) must say so too, without a new apply.

const table: RouteTable = { routes: [], rejections: [] };

function nginxStandIn() {
  const outcome: Partial<NginxOutcome> = { ok: true, behind: false, since: Date.now(), pid: 42, unchanged: 0 };
  let refuse = false;
  return {
    outcome,
    refuseNext: (yes: boolean) => (refuse = yes),
    plane: {
      async apply() {
        if (refuse) {
          outcome.ok = false;
          outcome.behind = true;
          outcome.since = Date.now();
          throw new Error('nginx refused the config: the test says no');
        }
      },
      async close() {},
      lastOutcome: () => ({ ...outcome }) as NginxOutcome,
    },
  };
}

describe('apply tracker', () => {
  it('turns ready again when nginx takes a refused table on its own retry', async () => {
    const nginx = nginxStandIn();
    let version = 1;
    const tracked = trackApplies('nginx', nginx.plane, () => version);
    await tracked.tracked.apply(table);
    assert.equal(tracked.state().servedVersion, 1);

    version = 2;
    nginx.refuseNext(true);
    await assert.rejects(tracked.tracked.apply(table));
    let verdict = decideReadiness(planeReports([tracked]), false);
    assert.deepEqual([verdict.status, tracked.state().servedVersion], ['degraded', 1], verdict.reason);

    // nginx's timer tries again, and nginx takes it: no apply from the controller.
    await new Promise((resolve) => setTimeout(resolve, 5));
    Object.assign(nginx.outcome, { ok: true, behind: false, since: Date.now() });
    verdict = decideReadiness(planeReports([tracked]), false);
    assert.deepEqual(
      [verdict.status, tracked.state().servedVersion, tracked.state().lastError],
      ['ready', 2, null],
      verdict.reason,
    );
  });

  it('stays degraded while nginx is still behind', async () => {
    const nginx = nginxStandIn();
    let version = 1;
    const tracked = trackApplies('nginx', nginx.plane, () => version);
    await tracked.tracked.apply(table);
    version = 2;
    nginx.refuseNext(true);
    await assert.rejects(tracked.tracked.apply(table));
    const verdict = decideReadiness(planeReports([tracked]), false);
    assert.equal(verdict.status, 'degraded', verdict.reason);
    assert.match(verdict.reason, /the test says no/);
  });
});
