import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chaosSeed, chaosViolations, describeChaos, runWatchChaos } from '../support/watch-chaos.js';

// The short form of the watch chaos soak (`npm run soak` runs it for 5 minutes): about
// 15 s of bursts of object changes and API-server faults, each followed by a quiet period
// in which the router, a real `k8s-router run` process, must print the table of the final
// objects within 5 s and nothing after it, without ever restarting, and without sending
// the API server more requests in a second than its backoff allows.

test(
  'watch chaos, short form: after every burst of faults the table is right within 5 s and stays so; ' +
    'the request rate stays bounded',
  async (t) => {
    const report = await runWatchChaos({ durationMs: 15_000, burstMs: [1_500, 3_000], holdMs: 700, seed: chaosSeed() });
    const lines = describeChaos(report);
    for (const line of lines) t.diagnostic(line);
    assert.ok(report.quiet.length >= 3, `at least 3 quiet periods: ${report.quiet.length}`);
    assert.ok(Object.values(report.faults).reduce((a, b) => a + b, 0) >= 5, 'faults were injected');
    assert.deepEqual(chaosViolations(report), [], lines.join('\n'));
  },
);
