import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import type { Pod } from '../../src/core/kube-objects.js';
import { sendRaw, type RawOutcome } from '../conformance/raw-http.js';
import { delay, eventually } from '../support/eventually.js';
import { FakeApiServer } from '../support/fake-api-server.js';
import { podFor } from '../support/manifests.js';
import { apiKeySecret } from '../support/objects.js';
import { startPods, type TestPod } from '../support/pods.js';
import { startRouterProcess, type RouterProcess } from '../support/router-process.js';
import { workDir } from '../support/work-dir.js';

// `k8s-router run` following a cluster: the fake Kubernetes API server (real client, TLS,
// watches) on one side, real pods on 127.0.0.x on the other, and plain HTTP requests
// through the router in between. Every change is made on the API server, as kubectl
// would, and checked the way a user would: by what the router answers.
//
// One router per backend serves all the scenarios; each scenario has its own host, so
// they do not see each other's objects. The two backends run side by side because the
// API-server outage takes 10 s whatever we do.

const podOf = (outcome: RawOutcome): string | undefined =>
  outcome.kind === 'response' ? outcome.headers.find(([k]) => k.toLowerCase() === 'x-pod')?.[1] : undefined;
const statusOf = (outcome: RawOutcome): number | 'dropped' =>
  outcome.kind === 'response' ? outcome.status : 'dropped';

const KEY_HEADER = 'X-ROUTING-API-KEY';

/**
 * The routers here cap their watch backoff at WATCH_BACKOFF_MAX_MS (the default, 30 s,
 * suits a real cluster): after the API server comes back, the router looks again within
 * that cap, then needs the usual few seconds.
 */
const WATCH_BACKOFF_MAX_MS = 1_000;
const RECONNECT_AFTER_OUTAGE_MS = WATCH_BACKOFF_MAX_MS + 5_000;
const base64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

/** The log line of a table change whose list `field` has an entry containing all of `parts`. */
const tableChange =
  (field: 'routesAdded' | 'routesRemoved' | 'rejectionsAdded', ...parts: string[]) =>
  (line: Record<string, unknown>): boolean =>
    Array.isArray(line[field]) &&
    (line[field] as unknown[]).some((entry) => parts.every((p) => String(entry).includes(p)));

/** The router under test, its pods, and how the scenarios change the cluster and ask the router. */
interface ClusterRun {
  api: FakeApiServer;
  router: RouterProcess;
  get: (host: string, path?: string, headers?: [string, string][]) => Promise<RawOutcome>;
  testPod: (i: number) => TestPod;
  podObject: (
    i: number,
    namespace: string,
    host: string,
    paths?: string[],
    extra?: { ready?: boolean; labels?: Record<string, string>; created?: string },
  ) => Pod;
  answersFrom: (host: string, expected: string, path?: string) => Promise<boolean>;
  until: (check: () => Promise<boolean>, what: string, timeoutMs?: number) => Promise<void>;
  statusIs: (
    host: string,
    expected: number | 'dropped',
    path?: string,
    headers?: [string, string][],
  ) => Promise<boolean>;
}

function clusterRun(
  backend: 'proxy' | 'nginx',
  api: FakeApiServer,
  pods: TestPod[],
  router: RouterProcess,
  port: number,
): ClusterRun {
  const get = (host: string, path = '/', headers: [string, string][] = []): Promise<RawOutcome> =>
    sendRaw(port, { method: 'GET', target: path, headers: [['Host', host], ...headers] }, 5_000);
  const testPod = (i: number): TestPod => pods[i] as TestPod;
  /** The Pod object for test pod `i`, with `routingHosts: host` and `routingPaths: PORT:path`. */
  const podObject = (
    i: number,
    namespace: string,
    host: string,
    paths = ['/'],
    extra: { ready?: boolean; labels?: Record<string, string>; created?: string } = {},
  ): Pod => podFor(testPod(i), { namespace, hosts: host, paths, ...extra });
  const answersFrom = async (host: string, expected: string, path = '/'): Promise<boolean> =>
    podOf(await get(host, path)) === expected;
  /**
   * Waits until `check` holds, then until the data plane finished applying. A graceful
   * nginx reload has a moment where new workers answer with the new config while old
   * ones still accept connections with the previous one; the router logs "nginx serves
   * the new config" once they stopped. The in-process proxy swaps tables at once.
   */
  const until = async (check: () => Promise<boolean>, what: string, timeoutMs?: number): Promise<void> => {
    await eventually(check, what, timeoutMs);
    if (backend !== 'nginx') return;
    const from = router.logs.map((l) => l.msg).lastIndexOf('route table changed');
    await router.waitForLog(
      (l) =>
        (l.msg === 'nginx serves the new config' || l.msg === 'nginx config unchanged: no reload') &&
        router.logs.indexOf(l) > from,
      `nginx to finish applying the table for ${what}`,
      5_000,
    );
  };
  const statusIs = async (
    host: string,
    expected: number | 'dropped',
    path = '/',
    headers: [string, string][] = [],
  ): Promise<boolean> => statusOf(await get(host, path, headers)) === expected;
  return { api, router, get, testPod, podObject, answersFrom, until, statusIs };
}

async function routesAnAddedPod({
  api,
  router,
  get,
  testPod,
  podObject,
  answersFrom,
  until,
}: ClusterRun): Promise<void> {
  assert.equal(statusOf(await get('added.test')), 'dropped', 'an unknown host gets no answer');
  api.upsert(podObject(0, 'shop', 'added.test'));
  await until(() => answersFrom('added.test', testPod(0).name, '/cart?id=1'), 'the new pod to be routed');
  assert.equal(testPod(0).received.at(-1)?.uri, '/cart?id=1');
  await router.waitForLog(
    tableChange('routesAdded', 'added.test/', `shop/${testPod(0).name}`),
    'the route to be logged',
  );
}

async function roundRobinsInNameOrder({ api, get, testPod, podObject, until }: ClusterRun): Promise<void> {
  for (const i of [2, 0, 1]) api.upsert(podObject(i, 'scale', 'scale.test'));
  const names = [0, 1, 2].map((i) => testPod(i).name);
  await until(async () => {
    const seen = new Set<string | undefined>();
    for (let n = 0; n < 3; n++) seen.add(podOf(await get('scale.test')));
    return names.every((name) => seen.has(name));
  }, 'all three pods to answer');

  const answered: Array<string | undefined> = [];
  for (let n = 0; n < 9; n++) answered.push(podOf(await get('scale.test')));
  const first = names.indexOf(answered[0] as string);
  assert.ok(first >= 0, `answered by a pod of the route: ${String(answered[0])}`);
  const expected = answered.map((_, n) => names[(first + n) % 3]);
  assert.deepEqual(answered, expected, 'each request goes to the next pod in name order');
}

async function followsAChangedPathsAnnotation({
  api,
  get,
  testPod,
  podObject,
  until,
  statusIs,
}: ClusterRun): Promise<void> {
  api.upsert(podObject(0, 'anno', 'anno.test', ['/old']));
  await until(() => statusIs('anno.test', 200, '/old/page'), 'the first path to be routed');
  api.upsert(podObject(0, 'anno', 'anno.test', ['/new']));
  await until(() => statusIs('anno.test', 200, '/new/page'), 'the new path to be routed');
  assert.equal(podOf(await get('anno.test', '/new/page')), testPod(0).name);
  // The host is still known, so the old path gets the documented 404, not a drop.
  assert.equal(statusOf(await get('anno.test', '/old/page')), 404);
}

async function stopsRoutingAnUnlabelledPod({
  api,
  router,
  testPod,
  podObject,
  answersFrom,
  until,
  statusIs,
}: ClusterRun): Promise<void> {
  api.upsert(podObject(1, 'labels', 'label.test'));
  await until(() => answersFrom('label.test', testPod(1).name), 'the labelled pod to be routed');
  api.upsert(podObject(1, 'labels', 'label.test', ['/'], { labels: { app: 'web' } }));
  await until(() => statusIs('label.test', 'dropped'), 'the host to be unknown');
  // The API server filters by label, so to the router the pod is simply gone.
  await router.waitForLog(
    tableChange('routesRemoved', 'label.test/', `labels/${testPod(1).name}`),
    'the removed route to be logged',
  );
}

async function routesAPodOnceReady({
  api,
  router,
  get,
  testPod,
  podObject,
  answersFrom,
  until,
}: ClusterRun): Promise<void> {
  api.upsert(podObject(2, 'ready', 'ready.test', ['/'], { ready: false }));
  await router.waitForLog(
    tableChange('rejectionsAdded', `ready/${testPod(2).name}`, 'NOT_READY'),
    'the NOT_READY reason to be logged',
  );
  assert.equal(statusOf(await get('ready.test')), 'dropped');
  api.upsert(podObject(2, 'ready', 'ready.test', ['/'], { ready: true }));
  await until(() => answersFrom('ready.test', testPod(2).name), 'the ready pod to be routed');
}

async function stopsRoutingADeletedPod({
  api,
  testPod,
  podObject,
  answersFrom,
  until,
  statusIs,
}: ClusterRun): Promise<void> {
  api.upsert(podObject(3, 'gone', 'deleted.test'));
  await until(() => answersFrom('deleted.test', testPod(3).name), 'the pod to be routed');
  api.remove('Pod', 'gone', testPod(3).name);
  await until(() => statusIs('deleted.test', 'dropped'), 'the host of the deleted pod to be unknown');
}

async function locksRekeysAndReopens({ api, router, get, podObject, until, statusIs }: ClusterRun): Promise<void> {
  api.upsert(podObject(4, 'locked', 'locked.test'));
  await until(() => statusIs('locked.test', 200), 'the open route');

  api.upsert(apiKeySecret('locked', 'supersecret'));
  await until(() => statusIs('locked.test', 403), 'the route to require the key');
  assert.equal(
    statusOf(await get('locked.test', '/', [[KEY_HEADER, base64('supersecret')]])),
    200,
    'the base64 text is the key',
  );
  assert.equal(statusOf(await get('locked.test', '/', [[KEY_HEADER, 'supersecret']])), 403, 'the plain text is not');

  api.upsert(apiKeySecret('locked', 'rotated'));
  await until(
    () => statusIs('locked.test', 200, '/', [[KEY_HEADER, base64('rotated')]]),
    'the new key to open the route',
  );
  assert.equal(
    statusOf(await get('locked.test', '/', [[KEY_HEADER, base64('supersecret')]])),
    403,
    'the old key no longer works',
  );
  assert.equal(statusOf(await get('locked.test')), 403);

  api.remove('Secret', 'locked', 'routing');
  await until(() => statusIs('locked.test', 200), 'the route to be open again');
  assert.ok(!router.logs.some((l) => JSON.stringify(l).includes(base64('supersecret'))), 'no API key in any log line');
  assert.ok(!router.logs.some((l) => JSON.stringify(l).includes(base64('rotated'))), 'no API key in any log line');
}

async function keepsTheFirstClaim({
  api,
  router,
  get,
  testPod,
  podObject,
  answersFrom,
  until,
}: ClusterRun): Promise<void> {
  api.upsert(podObject(0, 'first', 'claimed.test', ['/'], { created: '2024-01-01T00:00:00Z' }));
  await until(() => answersFrom('claimed.test', testPod(0).name), 'the first namespace to be routed');
  api.upsert(podObject(5, 'second', 'claimed.test', ['/'], { created: '2024-06-01T00:00:00Z' }));
  // The reason names the owner.
  await router.waitForLog(
    tableChange('rejectionsAdded', `second/${testPod(5).name}`, 'ROUTE_CLAIMED', 'namespace first'),
    'the younger claim to be rejected',
  );
  for (let n = 0; n < 4; n++) assert.equal(podOf(await get('claimed.test')), testPod(0).name, 'only the owner answers');
}

async function routesAfterDroppedWatches({ api, testPod, podObject, answersFrom, until }: ClusterRun): Promise<void> {
  const watchesBefore = api.requestsTo('/api/v1/pods', 'watch').length;
  api.dropStreams();
  api.upsert(podObject(1, 'dropped', 'after-drop.test'));
  await until(() => answersFrom('after-drop.test', testPod(1).name), 'the change made after the drop to be routed');
  const resumed = api.requestsTo('/api/v1/pods', 'watch').slice(watchesBefore);
  assert.ok(
    resumed.length >= 1 && resumed.every((r) => r.query.resourceVersion !== undefined),
    'the watch resumed from a version',
  );
}

async function relistsAfterGone({
  api,
  router,
  testPod,
  podObject,
  answersFrom,
  until,
  statusIs,
}: ClusterRun): Promise<void> {
  api.upsert(podObject(2, 'gap', 'gap-deleted.test'));
  await until(() => answersFrom('gap-deleted.test', testPod(2).name), 'the pod to be routed');
  const listsBefore = api.requestsTo('/api/v1/pods', 'list').length;

  api.dropStreams();
  // Made before the router can reconnect, and compacted: no watch can replay them.
  api.remove('Pod', 'gap', testPod(2).name);
  api.upsert(podObject(3, 'gap', 'gap-added.test'));
  api.compact();

  await until(() => answersFrom('gap-added.test', testPod(3).name), 'the pod added during the gap to be routed');
  await until(() => statusIs('gap-deleted.test', 'dropped'), 'the pod deleted during the gap to be gone');
  await router.waitForLog(
    (l) => l.msg === 'watch expired (410 Gone), listing again' && l.collection === 'pods',
    'the relist to be logged',
  );
  assert.ok(api.requestsTo('/api/v1/pods', 'list').length > listsBefore, 'the pods were listed again');
}

async function servesThroughAnOutage(
  { api, router, get, testPod, podObject, answersFrom, until }: ClusterRun,
  t: TestContext,
): Promise<void> {
  api.upsert(podObject(4, 'outage', 'outage.test'));
  await until(() => answersFrom('outage.test', testPod(4).name), 'the pod to be routed');

  await api.stop();
  for (let second = 0; second < 10; second++) {
    assert.equal(podOf(await get('outage.test')), testPod(4).name, `still served ${second} s into the outage`);
    await delay(1_000);
  }
  await router.waitForLog(
    (l) => JSON.stringify(l.err ?? '').includes('ECONNREFUSED'),
    'the router to notice the outage',
  );
  assert.equal(router.logs.filter((l) => l.msg === 'k8s-router is serving').length, 1, 'the router did not restart');

  await api.restart();
  const back = Date.now();
  api.upsert(podObject(5, 'outage', 'after-outage.test'));
  await until(
    () => answersFrom('after-outage.test', testPod(5).name),
    'the change made after the outage to be routed',
    RECONNECT_AFTER_OUTAGE_MS,
  );
  t.diagnostic(`routed ${Date.now() - back} ms after the API server came back (watch backoff)`);
  assert.equal(podOf(await get('outage.test')), testPod(4).name);
}

describe('k8s-router run following a Kubernetes API server', { concurrency: 2 }, () => {
  for (const backend of ['proxy', 'nginx'] as const) {
    describe(`--backend ${backend}`, { concurrency: 1 }, () => {
      let dir: string;
      let api: FakeApiServer;
      let pods: TestPod[];
      let router: RouterProcess;
      let run: ClusterRun;

      before(async () => {
        dir = await workDir(`k8s-router-e2e-cluster-${backend}-`);
        api = await FakeApiServer.start();
        // Addresses apart from run-manifest's (41.., 51..), which may run at the same time.
        pods = await startPods(`pod-${backend}`, 6, backend === 'proxy' ? 61 : 71);
        const port = await pickFreeLoopbackPort();
        router = await startRouterProcess(['--backend', backend], {
          PORT: String(port),
          LISTEN_ADDRESS: '127.0.0.1',
          NGINX_PREFIX: join(dir, 'nginx'),
          HOLD_OFF_MS: '20',
          MAX_DELAY_MS: '100',
          WATCH_BACKOFF_MAX_MS: String(WATCH_BACKOFF_MAX_MS),
          KUBECONFIG: api.kubeConfigFile(),
        });
        run = clusterRun(backend, api, pods, router, port);
      });

      after(async () => {
        const exit = await router?.stop();
        await Promise.all((pods ?? []).map((p) => p.close()));
        await api?.close();
        await rm(dir, { recursive: true, force: true });
        assert.equal(exit, 0, 'the router exits 0 on SIGTERM');
      });

      it('routes a pod as soon as it is added, and forwards the request unchanged', () => routesAnAddedPod(run));

      it('scaled to three pods, it round-robins across the three in pod-name order', () => roundRobinsInNameOrder(run));

      it('follows a changed paths annotation: the new path is routed, the old one is 404', () =>
        followsAChangedPathsAnnotation(run));

      it('stops routing a pod whose routable label is removed', () => stopsRoutingAnUnlabelledPod(run));

      it('does not route a pod that is not ready, says why, and routes it once it is Ready', () =>
        routesAPodOnceReady(run));

      it('stops routing a deleted pod', () => stopsRoutingADeletedPod(run));

      it('locks, rekeys and reopens a namespace as its API-key Secret is added, changed and removed', () =>
        locksRekeysAndReopens(run));

      it(
        'keeps a route with the namespace that claimed it first, ' + 'and rejects the younger claim with ROUTE_CLAIMED',
        () => keepsTheFirstClaim(run),
      );

      it('after every watch stream is dropped, a change made afterwards is still routed', () =>
        routesAfterDroppedWatches(run));

      it('on 410 Gone it lists again: a pod deleted during the gap disappears, one added appears', () =>
        relistsAfterGone(run));

      it('keeps serving while the API server is down for 10 s, and follows a change made once it is back', (t) =>
        servesThroughAnOutage(run, t));
    });
  }
});
