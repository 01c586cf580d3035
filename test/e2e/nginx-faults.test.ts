import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type { NginxMode } from '../../src/core/config.js';
import { childrenOf, groupMembers, identify, type ProcessIdentity } from '../../nginx/workers.js';
import { delay, eventually } from '../support/eventually.js';
import { LoadClient, type Outcome } from '../support/load-client.js';
import { nginxMasters } from '../support/nginx-wrapper.js';
import {
  adminGet,
  answeredBy,
  metric,
  nginxStatus,
  outage,
  probe,
  routeTo,
  serving,
  startRouter,
} from '../support/nginx-router.js';

// `k8s-router run --backend nginx` while nginx fails under it, and while the router itself
// is killed outright, in both nginx modes: documented (each table rendered into nginx.conf
// and reloaded) and dynamic (one nginx.conf, each table sent to Lua in nginx over a unix
// socket). Requests go on throughout, counted by the client. Each mode's pods have their
// own addresses, so the two modes run at the same time.

const FIRST_IP: Record<NginxMode, Record<string, number>> = {
  documented: { killed: 121, refused: 131, orphaned: 141, restarted: 238 },
  dynamic: { killed: 230, refused: 232, orphaned: 234, restarted: 236 },
};

async function nginxKilled(mode: NginxMode, t: TestContext): Promise<void> {
  const { setup, host, router, master: first } = await serving('killed', FIRST_IP[mode].killed as number, t, mode);
  const killed = [first];
  const leftBehind: ProcessIdentity[] = await childrenOf(first);
  const probes = probe(setup, host);
  await delay(200);

  await setup.wrapper.hideNextStarts(2);
  const firstKill = Date.now();
  process.kill(first, 'SIGKILL');
  for (let i = 0; i < 2; i++) {
    const hidden = await eventually(
      async () => {
        for (const pid of await nginxMasters(setup.prefix, '.hidden')) {
          const workers = killed.includes(pid) ? [] : await childrenOf(pid);
          if (workers.length > 0) return { pid, workers };
        }
        return null;
      },
      `replacement ${i + 1} to start its workers`,
      15_000,
    );
    killed.push(hidden.pid);
    leftBehind.push(...hidden.workers);
    process.kill(hidden.pid, 'SIGKILL');
  }
  const lastKill = Date.now();
  const restarted = await router.waitForLog(
    (l) => l.msg === 'nginx restarted on the last good config',
    'nginx to be restarted',
    20_000,
  );
  const restartedMs = Number(restarted.time) - lastKill;
  await delay(300);
  const during = await probes.stop();

  // A new table is served: nothing left behind holds the port with an older config.
  await routeTo(setup, host, 1);
  await eventually(
    async () => (await answeredBy(setup.port, host)) === setup.pods[1]?.name,
    'the new table to be served',
    10_000,
  );
  const [live] = await nginxMasters(setup.prefix);
  assert.ok(live !== undefined && !killed.includes(live));
  const { failed, longestMs } = outage(during);
  t.diagnostic(
    `${mode}: ${killed.length} masters killed over ${lastKill - firstKill} ms; ` +
      `restarted ${restartedMs} ms after the last kill; ` +
      `${during.length} probes, ${failed} failed, longest outage ${longestMs} ms`,
  );

  const stoppedAt = Date.now();
  router.kill('SIGTERM');
  assert.equal(await router.exited, 0, 'the router exits 0 on SIGTERM');
  t.diagnostic(`${mode}: stopped in ${Date.now() - stoppedAt} ms`);
  for (const pid of [...killed, live]) assert.deepEqual(await groupMembers(pid), [], `nothing of nginx ${pid} is left`);
  assert.deepEqual(await nginxMasters(setup.prefix), []);
  assert.equal(leftBehind.length >= 3, true);
}

async function routerKilled(mode: NginxMode, t: TestContext): Promise<void> {
  const { setup, host, router: first, master } = await serving('orphaned', FIRST_IP[mode].orphaned as number, t, mode);
  const probes = probe(setup, host);

  first.kill('SIGKILL');
  assert.equal(await first.exited, 'SIGKILL');
  // Nobody follows the manifest now; nginx, in its own process group, serves on.
  await routeTo(setup, host, 1);
  await delay(1_000);
  assert.equal(await answeredBy(setup.port, host), setup.pods[0]?.name, 'the last table keeps serving');
  assert.deepEqual(await nginxMasters(setup.prefix), [master]);

  const restartAt = Date.now();
  const second = await startRouter(setup);
  await eventually(
    async () => (await answeredBy(setup.port, host)) === setup.pods[1]?.name,
    'the new router to serve the new table',
    10_000,
  );
  const servedMs = Date.now() - restartAt;
  const during = await probes.stop();
  const { failed, longestMs } = outage(during);
  const stale = second.logs.find((l) =>
    String(l.msg).startsWith('stopping nginx processes that no running master manages'),
  );
  t.diagnostic(
    `${mode}: new table served ${servedMs} ms after the new router was asked to start ` +
      `(routers start one at a time); ${during.length} probes, ${failed} failed, longest outage ${longestMs} ms`,
  );
  assert.ok(stale !== undefined, 'the new router says it stopped the leftover nginx');
  await eventually(async () => (await groupMembers(master)).length === 0, 'the leftover nginx to be gone', 10_000);
  assert.equal(await identify(master), null, 'the leftover master is gone (or a zombie nobody reaps)');
  second.kill('SIGTERM');
  assert.equal(await second.exited, 0);
  assert.deepEqual(await nginxMasters(setup.prefix), []);
}

/**
 * nginx's master killed outright: /readyz says 503 until the fresh nginx serves the table,
 * and from the first 200 on, every request is answered from the table (a dynamic nginx
 * that was not sent its table yet would close each connection unanswered: nginx's 444).
 */
async function readyOnlyWithTheTable(mode: NginxMode, t: TestContext): Promise<void> {
  const { setup, host, router, master } = await serving('restarted', FIRST_IP[mode].restarted as number, t, mode);
  const client = new LoadClient({ port: setup.port, host }, { keepAlive: false, idPrefix: 'ready', timeoutMs: 5_000 });
  const readyz: Array<{ at: number; status: number }> = [];
  const afterReady: Outcome[] = [];
  let readyAgainAt: number | null = null;

  process.kill(master, 'SIGKILL');
  const killedAt = Date.now();
  while (Date.now() - killedAt < 20_000 && (readyAgainAt === null || Date.now() - readyAgainAt < 1_500)) {
    const { status } = await adminGet(router, '/readyz');
    readyz.push({ at: Date.now(), status });
    if (status === 200 && readyz.some((r) => r.status === 503)) readyAgainAt ??= Date.now();
    // Only requests sent after /readyz said 200 again count: a probe sees no earlier.
    if (readyAgainAt !== null) afterReady.push((await client.send()).outcome);
  }
  const notReady = readyz.filter((r) => r.status === 503);
  assert.ok(notReady.length > 0, `/readyz never said 503 after nginx was killed: ${readyz.length} answers, all 200`);
  assert.ok(readyAgainAt !== null, `/readyz did not say 200 again within 20 s (last: ${readyz.at(-1)?.status})`);
  const wrong = afterReady.filter((o) => !(o.kind === 'response' && o.status === 200 && o.pod === setup.pods[0]?.name));
  t.diagnostic(
    `${mode}: /readyz 503 for ${readyAgainAt - (notReady[0]?.at ?? killedAt)} ms (${notReady.length} answers); ` +
      `${afterReady.length} requests after it said 200 again, ${wrong.length} not answered by the table`,
  );
  assert.deepEqual(
    wrong.slice(0, 5),
    [],
    `${wrong.length} of ${afterReady.length} requests after /readyz said 200 were not answered by the pod`,
  );
  assert.ok(afterReady.length >= 10, `only ${afterReady.length} requests after /readyz said 200`);
  const [fresh] = await nginxMasters(setup.prefix);
  assert.ok(fresh !== undefined && fresh !== master, 'a fresh master serves');
  router.kill('SIGTERM');
  assert.equal(await router.exited, 0);
}

async function refusedTableRetried(t: TestContext): Promise<void> {
  const { setup, host, router } = await serving('refused', FIRST_IP.documented.refused as number, t);
  await setup.wrapper.refuseChecks('nginx: [emerg] refused by the test');
  const mark = router.logs.length;
  await routeTo(setup, host, 1);
  const refusal = await router.waitForLog(
    (l) => l.msg === 'nginx kept its previous config',
    'the refusal',
    10_000,
    mark,
  );
  assert.equal(refusal.code, 'KR_NGINX_CONFIG_REFUSED');
  assert.match(String(refusal.err), /refused by the test/);
  // Nobody touches the manifest again: the router tries again by itself.
  await router.waitForLog(
    (l) => l.msg === 'trying the table nginx did not take again later' && Number(l.attempt) >= 2,
    'a second retry',
    15_000,
    mark,
  );
  assert.equal(await answeredBy(setup.port, host), setup.pods[0]?.name, 'the previous table serves meanwhile');
  await setup.wrapper.allowChecks();
  const allowedAt = Date.now();
  await router.waitForLog((l) => l.msg === 'nginx serves the new config', 'the retry to succeed', 15_000, mark);
  t.diagnostic(`documented: served ${Date.now() - allowedAt} ms after nginx accepted configs again`);
  assert.equal(await answeredBy(setup.port, host), setup.pods[1]?.name);
  router.kill('SIGTERM');
  assert.equal(await router.exited, 0);
}

async function controlSocketGoneIsRepaired(t: TestContext): Promise<void> {
  const { setup, host, router, master } = await serving('refused', FIRST_IP.dynamic.refused as number, t, 'dynamic');
  const workers = (await childrenOf(master)).map((w) => w.pid).sort();
  let mark = router.logs.length;
  await routeTo(setup, host, 1);
  await router.waitForLog((l) => l.msg === 'nginx serves the new table', 'the change to be sent', 10_000, mark);
  assert.equal(await answeredBy(setup.port, host), setup.pods[1]?.name);
  assert.equal(await metric(router, 'k8s_router_nginx_reloads_total'), 0, 'a table change does not reload nginx');
  assert.deepEqual(await nginxMasters(setup.prefix), [master]);
  assert.deepEqual((await childrenOf(master)).map((w) => w.pid).sort(), workers, 'nor start a worker');

  // The fault: the socket file is removed under the running nginx (which will never bind it again).
  await rm(join(setup.prefix, 'control', 'table.sock'));
  const probes = probe(setup, host);
  mark = router.logs.length;
  await routeTo(setup, host, 0);
  const failure = await router.waitForLog(
    (l) => l.msg === 'nginx kept its previous config',
    'the failed send',
    10_000,
    mark,
  );
  const [status, readyz, failures] = await Promise.all([
    nginxStatus(router),
    adminGet(router, '/readyz'),
    metric(router, 'k8s_router_nginx_reload_failures_total'),
  ]);
  assert.equal(failure.code, 'KR_NGINX_IO_FAILED');
  assert.match(String(failure.err), /control socket cannot be reached.*ENOENT/);
  const lastError = status.lastError as { code: string; message: string } | null;
  assert.equal(lastError?.code, 'KR_NGINX_IO_FAILED', JSON.stringify(status));
  assert.equal(status.behind, true);
  assert.notEqual(status.retry, null, `a retry is pending: ${JSON.stringify(status)}`);
  assert.equal(readyz.status, 200, readyz.body);
  const verdict = JSON.parse(readyz.body) as { status: string; reason: string };
  assert.equal(verdict.status, 'degraded');
  assert.match(verdict.reason, /control socket/);
  assert.equal(failures, 1);
  assert.equal(await answeredBy(setup.port, host), setup.pods[1]?.name, 'the previous table serves meanwhile');

  // Nobody touches the manifest again: the retry finds the socket still gone and starts a fresh nginx.
  const replaced = await router.waitForLog(
    (l) => String(l.msg).startsWith("nginx's control socket is still gone"),
    'the fresh nginx',
    15_000,
    mark,
  );
  await router.waitForLog((l) => l.msg === 'nginx serves the new config', 'the retry to succeed', 15_000, mark);
  await eventually(
    async () => (await answeredBy(setup.port, host)) === setup.pods[0]?.name,
    'the new table to be served',
    10_000,
  );
  const during = await probes.stop();
  const [fresh] = await nginxMasters(setup.prefix);
  assert.ok(fresh !== undefined && fresh !== master, 'a fresh master serves');
  assert.equal(replaced.pid, master);
  await eventually(
    async () => (await identify(master)) === null && (await groupMembers(master)).length === 0,
    'the old nginx to be gone',
    10_000,
  );
  const after = JSON.parse((await adminGet(router, '/readyz')).body) as { status: string };
  assert.equal(after.status, 'ready');
  assert.equal(await metric(router, 'k8s_router_nginx_reloads_total'), 0, 'nor was the repair a reload');
  const { failed, longestMs } = outage(during);
  t.diagnostic(
    `dynamic: replaced ${Number(replaced.time) - Number(failure.time)} ms after the failed send; ` +
      `${during.length} probes, ${failed} failed, longest outage ${longestMs} ms`,
  );
  router.kill('SIGTERM');
  assert.equal(await router.exited, 0);
  assert.deepEqual(await nginxMasters(setup.prefix), []);
}

describe('nginx faults under a running router, in both nginx modes', { concurrency: 3, timeout: 180_000 }, () => {
  for (const mode of ['documented', 'dynamic'] as const) {
    it(
      `${mode}: nginx killed, and each replacement killed before it is confirmed: serving goes on, ` +
        'new tables are served, SIGTERM exits 0 and leaves no nginx',
      (t) => nginxKilled(mode, t),
    );
    it(
      `${mode}: the router killed outright: its nginx keeps serving the last table; ` +
        'the next router on the prefix retires it and serves',
      (t) => routerKilled(mode, t),
    );
    it(
      `${mode}: nginx's master killed: /readyz says 503 until the fresh nginx serves the table, ` +
        'and every request after its 200 is answered from it',
      (t) => readyOnlyWithTheTable(mode, t),
    );
  }

  it(
    'documented: a table nginx refuses is retried by the router on a timer; the old table serves meanwhile, ' +
      'the new one once nginx takes it',
    (t) => refusedTableRetried(t),
  );

  it(
    "dynamic: a table change is sent without a reload; with nginx's control socket gone, the change fails, shows, " +
      'is retried, and a fresh nginx serves it',
    (t) => controlSocketGoneIsRepaired(t),
  );
});
