import { describe, it } from 'node:test';
import { runChurn } from '../support/churn.js';
import { checkChurn } from '../support/churn-checks.js';

// The short form of the churn soak (test/soak/churn.soak.ts, `npm run soak`): a few
// seconds of load on stable routes while, every 200 ms, pods are added to and removed
// from other routes and from the same routes, through `k8s-router run` following the
// fake API server, for the proxy and both nginx modes. Not one request on the stable routes
// may fail; documented nginx reloads for the changes, dynamic nginx never does.

describe('load on stable routes while pods churn (short)', { concurrency: 3, timeout: 120_000 }, () => {
  it('--backend proxy', async (t) =>
    checkChurn(t, await runChurn({ backend: 'proxy', durationMs: 6_000, firstIp: 160, seed: 11 })));
  it('--backend nginx', async (t) =>
    checkChurn(t, await runChurn({ backend: 'nginx', durationMs: 6_000, firstIp: 170, seed: 12 })));
  it('--backend nginx --nginx-mode dynamic', async (t) =>
    checkChurn(
      t,
      await runChurn({ backend: 'nginx', nginxMode: 'dynamic', durationMs: 6_000, firstIp: 245, ipCount: 6, seed: 13 }),
    ));
});
