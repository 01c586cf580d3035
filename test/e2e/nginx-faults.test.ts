import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { childrenOf, groupMembers, identify, type ProcessIdentity } from '../../nginx/workers.js';
import { delay, eventually } from '../support/eventually.js';
import { nginxMasters } from '../support/nginx-wrapper.js';
import { answeredBy, outage, probe, routeTo, serving, startRouter } from '../support/nginx-router.js';

// `k8s-router run --backend nginx` while nginx fails under it, and while the router itself
// is killed outright. Requests go on throughout, counted by the client.

describe('nginx faults under a running router', { concurrency: 3, timeout: 120_000 }, () => {
  it('nginx killed, and each replacement killed before it is confirmed: serving goes on, new tables are served, SIGTERM exits 0 and leaves no nginx', async (t) => {
    const { setup, host, router, master: first } = await serving('killed', 121, t);
    const killed = [first];
    const leftBehind: ProcessIdentity[] = await childrenOf(first);
    const probes = probe(setup.port, host);
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
    const restarted = await router.waitForLog((l) => l.msg === 'nginx restarted on the last good config', 'nginx to be restarted', 20_000);
    const restartedMs = Number(restarted.time) - lastKill;
    await delay(300);
    const during = await probes.stop();

    // A new table is served: nothing left behind holds the port with an older config.
    await routeTo(setup, host, 1);
    await eventually(async () => (await answeredBy(setup.port, host)) === setup.pods[1]?.name, 'the new table to be served', 10_000);
    const [live] = await nginxMasters(setup.prefix);
    assert.ok(live !== undefined && !killed.includes(live));
    const { failed, longestMs } = outage(during);
    t.diagnostic(
      `${killed.length} masters killed over ${lastKill - firstKill} ms; restarted ${restartedMs} ms after the last kill; ` +
        `${during.length} probes, ${failed} failed, longest outage ${longestMs} ms`,
    );

    const stoppedAt = Date.now();
    router.kill('SIGTERM');
    assert.equal(await router.exited, 0, 'the router exits 0 on SIGTERM');
    t.diagnostic(`stopped in ${Date.now() - stoppedAt} ms`);
    for (const pid of [...killed, live]) assert.deepEqual(await groupMembers(pid), [], `nothing of nginx ${pid} is left`);
    assert.deepEqual(await nginxMasters(setup.prefix), []);
    assert.equal(leftBehind.length >= 3, true);
  });

  it('a table nginx refuses is retried by the router on a timer; the old table serves meanwhile, the new one once nginx takes it', async (t) => {
    const { setup, host, router } = await serving('refused', 131, t);
    await setup.wrapper.refuseChecks('nginx: [emerg] refused by the test');
    const mark = router.logs.length;
    await routeTo(setup, host, 1);
    const refusal = await router.waitForLog((l) => l.msg === 'nginx kept its previous config', 'the refusal', 10_000, mark);
    assert.equal(refusal.code, 'KR_NGINX_CONFIG_REFUSED');
    assert.match(String(refusal.err), /refused by the test/);
    // Nobody touches the manifest again: the router tries again by itself.
    await router.waitForLog((l) => l.msg === 'trying the table nginx did not take again later' && Number(l.attempt) >= 2, 'a second retry', 15_000, mark);
    assert.equal(await answeredBy(setup.port, host), setup.pods[0]?.name, 'the previous table serves meanwhile');
    await setup.wrapper.allowChecks();
    const allowedAt = Date.now();
    await router.waitForLog((l) => l.msg === 'nginx serves the new config', 'the retry to succeed', 15_000, mark);
    t.diagnostic(`served ${Date.now() - allowedAt} ms after nginx accepted configs again`);
    assert.equal(await answeredBy(setup.port, host), setup.pods[1]?.name);
    router.kill('SIGTERM');
    assert.equal(await router.exited, 0);
  });

  it('the router killed outright: its nginx keeps serving the last table; the next router on the prefix retires it and serves', async (t) => {
    const { setup, host, router: first, master } = await serving('orphaned', 141, t);
    const probes = probe(setup.port, host);

    first.kill('SIGKILL');
    assert.equal(await first.exited, 'SIGKILL');
    // Nobody follows the manifest now; nginx, in its own process group, serves on.
    await routeTo(setup, host, 1);
    await delay(1_000);
    assert.equal(await answeredBy(setup.port, host), setup.pods[0]?.name, 'the last table keeps serving');
    assert.deepEqual(await nginxMasters(setup.prefix), [master]);

    const restartAt = Date.now();
    const second = await startRouter(setup);
    await eventually(async () => (await answeredBy(setup.port, host)) === setup.pods[1]?.name, 'the new router to serve the new table', 10_000);
    const servedMs = Date.now() - restartAt;
    const during = await probes.stop();
    const { failed, longestMs } = outage(during);
    const stale = second.logs.find((l) => String(l.msg).startsWith('stopping nginx processes that no running master manages'));
    t.diagnostic(`new table served ${servedMs} ms after the new router started; ${during.length} probes, ${failed} failed, longest outage ${longestMs} ms`);
    assert.ok(stale !== undefined, 'the new router says it stopped the leftover nginx');
    await eventually(async () => (await groupMembers(master)).length === 0, 'the leftover nginx to be gone', 10_000);
    assert.equal(await identify(master), null, 'the leftover master is gone (or a zombie nobody reaps)');
    second.kill('SIGTERM');
    assert.equal(await second.exited, 0);
    assert.deepEqual(await nginxMasters(setup.prefix), []);
  });
});
