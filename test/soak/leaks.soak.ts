import { describe, it } from 'node:test';
import { checkLeaks } from '../support/leak-checks.js';
import { runLeaks } from '../support/leaks.js';

// `npm run soak`: 10,000 WebSocket connects and disconnects and 10,000 object changes
// through `k8s-router run`, per backend: the router's open file descriptors and RSS stay
// within 10% of their level after warm-up (2,000 of each). LEAK_COUNT changes the count.

const COUNT = Number(process.env.LEAK_COUNT ?? 10_000);

describe(
  `the router leaks nothing over ${COUNT} connections and ${COUNT} changes`,
  { concurrency: 1, timeout: 1_800_000 },
  () => {
    for (const [backend, firstIp] of [
      ['proxy', 180],
      ['nginx', 190],
    ] as const) {
      it(`--backend ${backend}`, async (t) => {
        checkLeaks(t, await runLeaks({ backend, connections: COUNT, changes: COUNT, warmUp: 2_000, firstIp }), {
          fdSlack: 4,
          fdTolerance: 0.1,
          rssTolerance: 0.1,
        });
      });
    }
  },
);
