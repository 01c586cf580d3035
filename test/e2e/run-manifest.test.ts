import assert from 'node:assert/strict';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { sendRaw, type RawOutcome } from '../conformance/raw-http.js';
import { manifestText, podFor } from '../support/manifests.js';
import { apiKeySecret } from '../support/objects.js';
import { startPods, type TestPod } from '../support/pods.js';
import { startRouterProcess, type RouterProcess } from '../support/router-process.js';
import { workDir } from '../support/work-dir.js';

// `k8s-router run --manifest FILE` on each backend: real pods on 127.0.0.x, real
// requests, and edits to the file while the router runs.

const podOf = (outcome: RawOutcome): string | undefined =>
  outcome.kind === 'response' ? outcome.headers.find(([k]) => k.toLowerCase() === 'x-pod')?.[1] : undefined;
const statusOf = (outcome: RawOutcome): number | 'dropped' =>
  outcome.kind === 'response' ? outcome.status : 'dropped';

/** A router that follows a manifest file, its pods, and how to edit the file and send it requests. */
interface ManifestRun {
  dir: string;
  pods: TestPod[];
  router: RouterProcess;
  /** Replaces the manifest the way editors and `kubectl get -o yaml > file` do. */
  writeManifest: (text: string) => Promise<void>;
  /** Writes the manifest and waits until the router says the new table is served. */
  applyManifest: (text: string) => Promise<void>;
  get: (host: string, path?: string, headers?: [string, string][]) => Promise<RawOutcome>;
}

/** Starts three pods and a router on a manifest that routes the first one (the pods are closed if it fails). */
async function startManifestRun(backend: 'proxy' | 'nginx'): Promise<ManifestRun> {
  const dir = await workDir(`k8s-router-e2e-${backend}-`);
  const manifest = join(dir, 'cluster.yaml');
  const pods = await startPods(`web-${backend}`, 3, backend === 'proxy' ? 41 : 51);
  const port = await pickFreeLoopbackPort();
  const writeManifest = async (text: string): Promise<void> => {
    const temp = `${manifest}.tmp`;
    await writeFile(temp, text);
    await rename(temp, manifest);
  };
  await writeManifest(
    manifestText([podFor(pods[0] as TestPod, { namespace: 'shop', hosts: 'shop.test', paths: ['/'] })]),
  );
  let router: RouterProcess;
  try {
    router = await startRouterProcess(['--backend', backend, '--manifest', manifest], {
      PORT: String(port),
      LISTEN_ADDRESS: '127.0.0.1',
      NGINX_PREFIX: join(dir, 'nginx'),
      HOLD_OFF_MS: '20',
      MAX_DELAY_MS: '100',
    });
  } catch (err) {
    await Promise.all(pods.map((p) => p.close()));
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const applyManifest = async (text: string): Promise<void> => {
    const mark = router.logs.length;
    await writeManifest(text);
    await router.waitForLog((l) => l.msg === 'route table served', 'the new table to be served', 10_000, mark);
  };
  const get = (host: string, path = '/', headers: [string, string][] = []): Promise<RawOutcome> =>
    sendRaw(port, { method: 'GET', target: path, headers: [['Host', host], ...headers] }, 5_000);
  return { dir, pods, router, writeManifest, applyManifest, get };
}
async function routesTheManifestPod({ pods, get }: ManifestRun): Promise<void> {
  const answer = await get('shop.test', '/cart');
  assert.equal(statusOf(answer), 200);
  assert.equal(podOf(answer), pods[0]?.name);
  assert.equal(pods[0]?.received.at(-1)?.uri, '/cart');
  assert.equal(statusOf(await get('unknown.test')), 'dropped');
}

function saysOnceThatEventsAreOff({ router }: ManifestRun): void {
  const off = router.logs.filter((l) => l.msg === 'Kubernetes Events for rejected pods are off');
  assert.equal(off.length, 1);
  assert.match(String(off[0]?.reason), /manifest file/);
}

async function followsASecondReplica({ pods, applyManifest, get }: ManifestRun): Promise<void> {
  await applyManifest(
    manifestText(pods.slice(0, 2).map((p) => podFor(p, { namespace: 'shop', hosts: 'shop.test', paths: ['/'] }))),
  );
  const answered = [];
  for (let i = 0; i < 4; i++) answered.push(podOf(await get('shop.test')));
  const names = pods.slice(0, 2).map((p) => p.name);
  assert.deepEqual(new Set(answered), new Set(names));
  assert.notEqual(answered[0], answered[1], 'consecutive requests go to different pods');
  assert.equal(answered[0], answered[2]);
}

async function locksTheNamespaceWithItsSecret({ pods, applyManifest, get }: ManifestRun): Promise<void> {
  await applyManifest(
    manifestText([
      podFor(pods[0] as TestPod, { namespace: 'shop', hosts: 'shop.test', paths: ['/'] }),
      apiKeySecret('shop', 'supersecret'),
    ]),
  );
  assert.equal(statusOf(await get('shop.test')), 403);
  const keyed = await get('shop.test', '/', [['X-ROUTING-API-KEY', 'c3VwZXJzZWNyZXQ=']]);
  assert.equal(statusOf(keyed), 200);
  assert.equal(statusOf(await get('shop.test', '/', [['X-ROUTING-API-KEY', 'supersecret']])), 403);
}

async function keepsServingWhileTheFileIsBroken({ router, writeManifest, get }: ManifestRun): Promise<void> {
  await writeManifest('kind: List\nitems: [unclosed\n');
  await router.waitForLog(
    (l) => l.msg === 'manifest unusable, still serving its last good objects',
    'the broken file to be reported',
  );
  assert.equal(statusOf(await get('shop.test', '/', [['X-ROUTING-API-KEY', 'c3VwZXJzZWNyZXQ=']])), 200);
}

async function stopsRoutingAnUnlabelledPod({ pods, router, applyManifest, get }: ManifestRun): Promise<void> {
  await applyManifest(
    manifestText([
      podFor(pods[0] as TestPod, { namespace: 'shop', hosts: 'shop.test', paths: ['/'], labels: { app: 'web' } }),
    ]),
  );
  assert.equal(statusOf(await get('shop.test')), 'dropped');
  const line = await router.waitForLog(
    (l) => Array.isArray(l.rejectionsAdded) && l.rejectionsAdded.some((r) => String(r).includes('NOT_SELECTED')),
    'the rejection to be logged',
  );
  assert.ok(!JSON.stringify(line).includes('c3VwZXJzZWNyZXQ='), 'no API key in the logs');
  assert.ok(!router.logs.some((l) => JSON.stringify(l).includes('c3VwZXJzZWNyZXQ=')), 'no API key in any log line');
}

for (const backend of ['proxy', 'nginx'] as const) {
  describe(`k8s-router run --backend ${backend} --manifest`, () => {
    let run: ManifestRun;

    before(async () => {
      run = await startManifestRun(backend);
    });

    after(async () => {
      if (run === undefined) return;
      const exit = await run.router.stop();
      await Promise.all(run.pods.map((p) => p.close()));
      await rm(run.dir, { recursive: true, force: true });
      assert.equal(exit, 0, 'the router exits 0 on SIGTERM');
    });

    it('routes the manifest pod, and drops requests for unknown hosts', () => routesTheManifestPod(run));
    it('says once that Kubernetes Events are off: a manifest has no API server to write them to', () =>
      saysOnceThatEventsAreOff(run));
    it('follows the file: a second replica shares the route round-robin in pod-name order', () =>
      followsASecondReplica(run));
    it('locks the namespace routes when its Secret appears, with the base64 text as the key', () =>
      locksTheNamespaceWithItsSecret(run));
    it('keeps serving the last good objects while the file is broken, and logs why', () =>
      keepsServingWhileTheFileIsBroken(run));
    it('stops routing a pod whose label is removed, and says why', () => stopsRoutingAnUnlabelledPod(run));
  });
}
