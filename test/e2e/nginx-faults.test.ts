import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { childrenOf, groupMembers, identify, type ProcessIdentity } from '../../nginx/workers.js';
import { delay, eventually } from '../support/eventually.js';
import { LoadClient } from '../support/load-client.js';
import { manifestText, podFor } from '../support/manifests.js';
import { createNginxWrapper, nginxMasters, type NginxWrapper } from '../support/nginx-wrapper.js';
import { startPods, type TestPod } from '../support/pods.js';
import { startRouterProcess, type RouterProcess } from '../support/router-process.js';

// `k8s-router run --backend nginx` while nginx fails under it, and while the router itself
// is killed outright. Requests go on throughout, counted by the client.

interface Setup {
  dir: string;
  prefix: string;
  manifest: string;
  port: number;
  pods: TestPod[];
  wrapper: NginxWrapper;
}

async function setUp(name: string, firstIp: number, t: TestContext): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), `k8s-router-nginx-faults-${name}-`));
  const pods = await startPods(`${name}`, 2, firstIp);
  const wrapper = await createNginxWrapper();
  const setup = { dir, prefix: join(dir, 'nginx'), manifest: join(dir, 'cluster.yaml'), port: await pickFreeLoopbackPort(), pods, wrapper };
  t.after(async () => {
    await Promise.all(pods.map((p) => p.close()));
    await wrapper.remove();
    await rm(dir, { recursive: true, force: true });
  });
  return setup;
}

/** Serves `host` from test pod `i` alone. */
async function routeTo(setup: Setup, host: string, i: number): Promise<void> {
  const pod = setup.pods[i] as TestPod;
  await writeFile(`${setup.manifest}.tmp`, manifestText([podFor(pod, { namespace: 'faults', hosts: host, paths: ['/'] })]));
  await rename(`${setup.manifest}.tmp`, setup.manifest);
}

function startRouter(setup: Setup, t: TestContext, env: Record<string, string> = {}): Promise<RouterProcess> {
  return startRouterProcess(['--backend', 'nginx', '--manifest', setup.manifest], {
    PORT: String(setup.port),
    LISTEN_ADDRESS: '127.0.0.1',
    NGINX_PREFIX: setup.prefix,
    NGINX_BINARY: setup.wrapper.path,
    HOLD_OFF_MS: '20',
    MAX_DELAY_MS: '100',
    SHUTDOWN_GRACE_MS: '3000',
    ...env,
  }).then((router) => {
    t.after(() => router.kill('SIGKILL'));
    return router;
  });
}

interface Probe {
  at: number;
  pod: string | null;
}

/** One request on a new connection every ~10 ms until stopped: who answered, when. */
function probe(port: number, host: string): { stop(): Promise<Probe[]> } {
  let running = true;
  const client = new LoadClient({ port, host }, { keepAlive: false, idPrefix: 'probe', timeoutMs: 5_000 });
  const probes: Probe[] = [];
  const loop = (async () => {
    while (running) {
      const { outcome, doneAt } = await client.send();
      probes.push({ at: doneAt, pod: outcome.kind === 'response' && outcome.status === 200 ? (outcome.pod ?? null) : null });
      await delay(10);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return probes;
    },
  };
}

/** The longest run of failed probes, in ms, and how many failed. */
function outage(probes: Probe[]): { failed: number; longestMs: number } {
  let longestMs = 0;
  let since: number | null = null;
  for (const p of probes) {
    if (p.pod === null) since ??= p.at;
    else if (since !== null) {
      longestMs = Math.max(longestMs, p.at - since);
      since = null;
    }
  }
  return { failed: probes.filter((p) => p.pod === null).length, longestMs };
}

/** A router on nginx serving `NAME.test` from test pod 0, and its nginx master. */
async function serving(name: string, firstIp: number, t: TestContext): Promise<{ setup: Setup; host: string; router: RouterProcess; master: number }> {
  const setup = await setUp(name, firstIp, t);
  const host = `${name}.test`;
  await routeTo(setup, host, 0);
  const router = await startRouter(setup, t);
  const [master] = await nginxMasters(setup.prefix);
  assert.ok(master !== undefined, 'nginx runs');
  return { setup, host, router, master };
}

const answeredBy = async (port: number, host: string): Promise<string | null> => {
  const { outcome } = await new LoadClient({ port, host }, { keepAlive: false, idPrefix: 'check' }).send();
  return outcome.kind === 'response' && outcome.status === 200 ? (outcome.pod ?? null) : null;
};

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
    assert.equal(refusal.code, 'CONFIG_REFUSED');
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
    const second = await startRouter(setup, t);
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
