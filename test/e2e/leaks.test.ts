import { describe, it } from 'node:test';
import { checkLeaks } from '../support/leak-checks.js';
import { runLeaks } from '../support/leaks.js';

// The short form of the leak soak (test/soak/leaks.soak.ts): 1,000 WebSocket connects and
// disconnects and 1,000 object changes through `k8s-router run`; the router's open file
// descriptors must come back to their level after warm-up, give or take a few, which a
// leak of one per connection or per change would overshoot a hundredfold. RSS is printed.

describe(
  'the router leaks no file descriptor over connections and changes (short)',
  { concurrency: 2, timeout: 180_000 },
  () => {
    for (const [backend, firstIp] of [
      ['proxy', 180],
      ['nginx', 190],
    ] as const) {
      it(`--backend ${backend}`, async (t) => {
        checkLeaks(t, await runLeaks({ backend, connections: 1_000, changes: 1_000, warmUp: 200, firstIp }), {
          fdSlack: 4,
        });
      });
    }
  },
);
