import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { delay, eventually } from '../support/eventually.js';
import { NGINX_BINARY } from '../support/nginx-check.js';
import { apiKeySecret, pod } from '../support/objects.js';
import {
  lastPrintedConfig,
  printedConfigs,
  startPrintingRouter,
  type PrintingRouter,
} from '../support/printed-configs.js';

// Why the fault property once failed on a loaded machine (seed 1471247977, path "5"): its
// steps, replayed with a data plane made slow on purpose (`nginx -t` takes 2 s, as a
// starved machine can make it), and the router's watches held away by 500s.
//
// The router builds tables one after the other: a change that arrives while the data plane
// is applying the previous table waits for that apply to end, and is then built from the
// objects the router knows at that moment. Here the objects before the steps and after
// them give the same config (the pod added by the steps is deleted again), so the config
// printed before the steps already equals the final one. A check that took "the last
// printed config equals the final objects' config" for convergence passed at once, and
// then saw the router print the table it knew next (with the pod: its deletion had not
// reached it) as "a stale table after the right one". That table was not stale for the
// router, and it ends on the final table: the tables come out in the order the router
// learned of the changes. The property now waits for a fence (see
// run-cluster-property.test.ts) instead.

const NGINX_CHECK_SECONDS = 2;

/** The steps of the failed case, replayed while nginx checks each config for 2 s. */
async function printsInTheOrderLearned(printing: PrintingRouter): Promise<void> {
  const { api, router } = printing;
  const servedSince = (logIndex: number): boolean =>
    router.logs.slice(logIndex).some((l) => l.msg === 'route table served');
  // Before the steps: a pod routed and served, then deleted, as the property's reset does;
  // the empty table goes to nginx, whose check now takes 2 s.
  api.upsert(pod('z', { namespace: 'ns-z', hosts: 'z.test', paths: '80:/', ports: [80] }));
  const zLogs = router.logs.length;
  await eventually(
    () => lastPrintedConfig(router.stdout())?.includes('z.test') && servedSince(zLogs),
    'the first pod to be served',
    15_000,
  );
  api.remove('Pod', 'ns-z', 'z');
  const empty = printing.expected();
  await eventually(() => lastPrintedConfig(router.stdout()) === empty, 'the empty table to be printed', 5_000);
  const stepsFrom = router.stdout().length;

  // The steps of the failed case, while nginx checks the empty table.
  api.upsert(
    pod('p1', {
      namespace: 'ns-a',
      ip: '10.0.0.1',
      hosts: 'a.test B.test c.test bad_host',
      paths: '8080:/api/',
      ports: [80, 8080],
    }),
  );
  api.upsert(apiKeySecret('ns-b', 'supersecret'));
  api.remove('Pod', 'ns-b', 'p0'); // not there: nothing happens
  api.upsert(
    pod('p0', {
      namespace: 'ns-b',
      ip: '10.0.0.8',
      labels: { routable: 'true', app: 'web' },
      phase: 'Pending',
      hosts: 'a.test B.test',
      paths: '80:/api 8080:/api/ 9999:/undeclared',
      ports: [80, 8080],
    }),
  );
  await delay(1_000); // the router reads these events (it cannot build a table before nginx is done)
  api.failRequests(500); // the 500 burst, held until cleared so that the router stays away
  api.dropStreams();
  api.remove('Pod', 'ns-a', 'p1');

  const final = printing.expected();
  assert.equal(final, empty, 'the final objects give the config printed before the steps');
  assert.equal(lastPrintedConfig(router.stdout()), final, 'so the last printed config "matches" already');

  // Once nginx is done, the router builds what it knows: p1, not yet its deletion.
  await eventually(
    () => printedConfigs(router.stdout().slice(stepsFrom)).length === 1,
    'the next table to be printed',
    10_000,
  );
  const [withP1] = printedConfigs(router.stdout().slice(stepsFrom));
  assert.match(withP1 ?? '', /server_name a\.test;/, 'the table the router knew: p1 routed');

  // Back in touch, it learns of the deletion and ends on the final table, printed last.
  api.clearFaults();
  const backLogs = router.logs.length;
  await eventually(
    () => lastPrintedConfig(router.stdout()) === final && servedSince(backLogs),
    'the final table to be printed and served',
    15_000,
  );
  await delay(500);
  assert.deepEqual(
    printedConfigs(router.stdout().slice(stepsFrom)).map((c) =>
      c === final ? 'final' : c === withP1 ? 'with p1' : 'other',
    ),
    ['with p1', 'final'],
    'each table once, in the order the router learned of the changes',
  );
}

describe('k8s-router run with a data plane slower than the changes', () => {
  let dir: string;
  let printing: PrintingRouter;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'k8s-router-slow-nginx-'));
    const slowNginx = join(dir, 'slow-nginx');
    await writeFile(
      slowNginx,
      `#!/bin/sh\nfor a in "$@"; do [ "$a" = "-t" ] && sleep ${NGINX_CHECK_SECONDS}; done\nexec ${NGINX_BINARY} "$@"\n`,
    );
    await chmod(slowNginx, 0o755);
    printing = await startPrintingRouter(
      'nginx',
      { NGINX_BINARY: slowNginx, WATCH_BACKOFF_MAX_MS: '1000' },
      { bookmarkIntervalMs: 100 },
    );
  });

  after(async () => {
    const exit = await printing?.close();
    await rm(dir, { recursive: true, force: true });
    assert.equal(exit, 0, 'the router exits 0 on SIGTERM');
  });

  it('prints the tables in the order it learned of the changes, and ends on the final one', () =>
    printsInTheOrderLearned(printing));
});
