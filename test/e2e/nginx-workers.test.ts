import assert from 'node:assert/strict';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { childrenOf, processTitle, type ProcessIdentity } from '../../nginx/workers.js';
import { sendRaw, type RawOutcome } from '../conformance/raw-http.js';
import { delay } from '../support/eventually.js';
import { manifestText, podFor } from '../support/manifests.js';
import { startPods, type TestPod } from '../support/pods.js';
import { startRouterProcess, type RouterProcess } from '../support/router-process.js';
import { workDir } from '../support/work-dir.js';

// The managed nginx with the production settings: WORKER_PROCESSES=2 and
// UPSTREAM_KEEPALIVE. It runs two workers, reuses pod connections, and reloads onto new
// workers when the table changes, the old ones retired before the change counts as served.

const WORKERS = 2;
let dir: string;
let manifest: string;
let pods: TestPod[];
let router: RouterProcess;
let port: number;

const podOf = (outcome: RawOutcome): string | undefined =>
  outcome.kind === 'response' ? outcome.headers.find(([k]) => k.toLowerCase() === 'x-pod')?.[1] : undefined;
const get = (host: string): Promise<RawOutcome> =>
  sendRaw(port, { method: 'GET', target: '/', headers: [['Host', host]] }, 5_000);

async function writeManifest(text: string): Promise<void> {
  await writeFile(`${manifest}.tmp`, text);
  await rename(`${manifest}.tmp`, manifest);
}

/** The workers of the nginx the router runs (its child whose title says master). */
async function nginxWorkers(): Promise<{ master: ProcessIdentity; workers: ProcessIdentity[] }> {
  for (const child of await childrenOf(router.pid)) {
    if (!(await processTitle(child))?.includes('nginx: master')) continue;
    const workers: ProcessIdentity[] = [];
    for (const worker of await childrenOf(child.pid)) {
      const title = await processTitle(worker);
      if (title?.includes('worker process') && !title.includes('shutting down')) workers.push(worker);
    }
    return { master: child, workers };
  }
  throw new Error(`no nginx master among the children of the router (pid ${router.pid})`);
}

before(async () => {
  dir = await workDir('k8s-router-e2e-workers-');
  manifest = join(dir, 'cluster.yaml');
  pods = await startPods('workers', 2, 121);
  port = await pickFreeLoopbackPort();
  await writeManifest(manifestText([podFor(pods[0] as TestPod, { hosts: 'a.test', paths: ['/'] })]));
  router = await startRouterProcess(['--backend', 'nginx', '--manifest', manifest], {
    PORT: String(port),
    LISTEN_ADDRESS: '127.0.0.1',
    NGINX_PREFIX: join(dir, 'nginx'),
    HOLD_OFF_MS: '20',
    MAX_DELAY_MS: '100',
    WORKER_PROCESSES: String(WORKERS),
    UPSTREAM_KEEPALIVE: '8',
  });
});

after(async () => {
  const exit = await router?.stop();
  await Promise.all((pods ?? []).map((p) => p.close()));
  await rm(dir, { recursive: true, force: true });
  assert.equal(exit, 0, 'the router exits 0 on SIGTERM');
});

/**
 * The workers nginx runs. A worker forked a moment ago still bears the master's title until
 * it names itself, so the count is read again for a while before it is believed.
 */
async function settledWorkerCount(): Promise<number> {
  let count = (await nginxWorkers()).workers.length;
  for (let tries = 0; count !== WORKERS && tries < 50; tries++) {
    await delay(100);
    count = (await nginxWorkers()).workers.length;
  }
  return count;
}

test(`nginx runs ${WORKERS} workers and reuses pod connections across client connections`, async () => {
  assert.equal(await settledWorkerCount(), WORKERS, 'worker processes under the master');
  const pod = pods[0] as TestPod;
  pod.received.length = 0;
  for (let i = 0; i < 20; i++) assert.equal(podOf(await get('a.test')), pod.name);
  const connections = new Set(pod.received.map((r) => r.remotePort)).size;
  // Each worker keeps its own idle connections: a few for 20 sequential requests, not 20.
  assert.ok(connections <= 2 * WORKERS, `${connections} pod connections for 20 requests`);
});

test('a change reloads nginx onto new workers, and only they serve once it is applied', async () => {
  const before = await nginxWorkers();
  const mark = router.logs.length;
  await writeManifest(
    manifestText(pods.map((p, i) => podFor(p, { hosts: i === 0 ? 'a.test' : 'b.test', paths: ['/'] }))),
  );
  await router.waitForLog((l) => l.msg === 'route table served', 'the new table to be served', 15_000, mark);
  assert.equal(podOf(await get('b.test')), pods[1]?.name);
  const afterReload = await nginxWorkers();
  assert.equal(afterReload.master.pid, before.master.pid, 'the same master, reloaded');
  assert.equal(afterReload.workers.length, WORKERS);
  const old = new Set(before.workers.map((w) => w.pid));
  assert.ok(
    afterReload.workers.every((w) => !old.has(w.pid)),
    'every accepting worker is a new one',
  );
});
