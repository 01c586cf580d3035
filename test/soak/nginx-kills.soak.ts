import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { groupMembers } from '../../nginx/workers.js';
import { delay, eventually } from '../support/eventually.js';
import { seededRandom } from '../support/seeded-random.js';
import { nginxMasters } from '../support/nginx-wrapper.js';
import { answeredBy, outage, probe, routeTo, serving } from '../support/nginx-router.js';

// `npm run soak`: the fault that was found by hand, repeated: kill the nginx master with
// SIGKILL, then kill each replacement as soon as it shows up in /proc (none, one or two
// of them), with requests going on throughout. Each round must end with nginx serving
// again; the rounds are 11 s apart, so each nginx has run long enough (10 s) for the
// restart delay to start over at 100 ms. At the end a new table is served, and SIGTERM
// stops the router (exit 0) with no nginx process left. ROUNDS changes the count.

const ROUNDS = Number(process.env.ROUNDS ?? 6);

describe(
  'nginx killed again and again, also while it is being restarted',
  { timeout: (ROUNDS * 15 + 60) * 1000 },
  () => {
    it(`${ROUNDS} rounds`, async (t) => {
      const { setup, host, router, master: first } = await serving('kills', 201, t);
      const random = seededRandom(7);
      const killed = new Set<number>();
      let current = first;
      const rounds: string[] = [];
      for (let round = 1; round <= ROUNDS; round++) {
        const probes = probe(setup, host);
        await delay(300);
        const mark = router.logs.length;
        const replacements = Math.floor(random() * 3);
        killed.add(current);
        process.kill(current, 'SIGKILL');
        let lastKill = Date.now();
        for (let i = 0; i < replacements; i++) {
          // As soon as a new master exists, before it can have been confirmed.
          const next = await eventually(
            async () => (await nginxMasters(setup.prefix)).find((pid) => !killed.has(pid)) ?? null,
            'a replacement master',
            15_000,
          );
          killed.add(next);
          process.kill(next, 'SIGKILL');
          lastKill = Date.now();
        }
        // A replacement may have been confirmed before it was killed: the round ends with a
        // restart whose master lives.
        const restarted = await router.waitForLog(
          (l) => l.msg === 'nginx restarted on the last good config' && !killed.has(Number(l.pid)),
          `round ${round}: nginx to be restarted`,
          20_000,
          mark,
        );
        await delay(300);
        const { failed, longestMs } = outage(await probes.stop());
        current = Number(restarted.pid);
        rounds.push(
          `round ${round}: ${1 + replacements} kills, ` +
            `restarted ${Number(restarted.time) - lastKill} ms after the last, ` +
            `${failed} requests failed, longest outage ${longestMs} ms`,
        );
        t.diagnostic(rounds.at(-1) as string);
        // Long enough for the restart delay to start over.
        if (round < ROUNDS) await delay(10_500);
      }

      await routeTo(setup, host, 1);
      await eventually(
        async () => (await answeredBy(setup.port, host)) === setup.pods[1]?.name,
        'the new table to be served',
        10_000,
      );
      router.kill('SIGTERM');
      assert.equal(await router.exited, 0, 'the router exits 0 on SIGTERM');
      assert.deepEqual(await nginxMasters(setup.prefix), []);
      for (const pid of [...killed, current])
        assert.deepEqual(await groupMembers(pid), [], `nothing of nginx ${pid} is left`);
    });
  },
);
