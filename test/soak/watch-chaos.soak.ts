import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chaosSeed, chaosViolations, describeChaos, runWatchChaos, type FaultKind } from '../support/watch-chaos.js';

// Watch chaos soak (`npm run soak`): 5 minutes of bursts of object changes and API-server
// faults (drops, 410s, 500s, 403s, stalls before and after headers, watches answered 410
// or ended at once, the server gone), each followed by a quiet period. Every time, the
// router must print the table of the final objects within 5 s and nothing after it; it
// never restarts; the API server never sees more requests in a second than the backoff
// allows. WATCH_CHAOS_MINUTES changes the length, WATCH_CHAOS_SEED replays a run.

const MINUTES = Number(process.env.WATCH_CHAOS_MINUTES ?? 5);

test(`watch chaos soak: ${MINUTES} minutes`, { timeout: (MINUTES * 60 + 120) * 1000 }, async (t) => {
  const report = await runWatchChaos({
    durationMs: MINUTES * 60_000,
    burstMs: [2_000, 6_000],
    holdMs: 1_000,
    seed: chaosSeed(),
  });
  const lines = describeChaos(report);
  for (const line of lines) t.diagnostic(line);
  const missing = (Object.entries(report.faults) as Array<[FaultKind, number]>)
    .filter(([, n]) => n === 0)
    .map(([k]) => k);
  assert.deepEqual(missing, [], 'every kind of fault was injected');
  assert.deepEqual(chaosViolations(report), [], lines.join('\n'));
});
