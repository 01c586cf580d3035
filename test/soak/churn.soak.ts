import { describe, it } from 'node:test';
import { runChurn } from '../support/churn.js';
import { checkChurn } from '../support/churn-checks.js';

// `npm run soak`: 60 s of load on stable routes while, every 200 ms, pods are added to
// and removed from other routes and from the same routes (never the last ready pod of a
// route), through `k8s-router run` following the fake API server, one backend after the
// other. Not one request on the stable routes may fail (see support/churn.ts).
// SOAK_SECONDS changes the length.

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);

describe(
  `load on stable routes while pods churn (${SECONDS} s)`,
  { concurrency: 1, timeout: (SECONDS * 2 + 120) * 1000 },
  () => {
    it('--backend proxy', async (t) =>
      checkChurn(t, await runChurn({ backend: 'proxy', durationMs: SECONDS * 1000, firstIp: 160, seed: 21 })));
    it('--backend nginx', async (t) =>
      checkChurn(t, await runChurn({ backend: 'nginx', durationMs: SECONDS * 1000, firstIp: 170, seed: 22 })));
    it('--backend nginx --nginx-mode dynamic', async (t) =>
      checkChurn(
        t,
        await runChurn({
          backend: 'nginx',
          nginxMode: 'dynamic',
          durationMs: SECONDS * 1000,
          firstIp: 245,
          ipCount: 6,
          seed: 23,
        }),
      ));
  },
);
