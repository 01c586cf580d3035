import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createKubeSource,
  loadKubeConfig,
  type KubeSource,
  type KubeSourceOptions,
} from '../src/sources/kube-source.js';
import { objectKey } from '../src/core/kube-objects.js';
import { FakeApiServer, type FakeApiServerOptions } from './support/fake-api-server.js';
import { delay, eventually } from './support/eventually.js';
import { apiKeySecret, pod } from './support/objects.js';
import { clusterPod } from './support/realistic-pods.js';
import type { Pod } from '../src/core/kube-objects.js';

// The Kubernetes source against the fake API server, through the real client. Timeouts
// and backoffs are scaled down (quiet timeout 1 s, backoff 50..500 ms) so that every
// failure mode is exercised within a few seconds.

interface Harness {
  server: FakeApiServer;
  source: KubeSource;
  changes: () => number;
  podKeys: () => string[];
  secretKeys: () => string[];
}

async function startSource(
  t: TestContext,
  options: {
    server?: FakeApiServerOptions;
    source?: Partial<KubeSourceOptions>;
    seed?: (s: FakeApiServer) => void;
    onChange?: () => void;
  } = {},
): Promise<Harness> {
  const server = await FakeApiServer.start({ bookmarkIntervalMs: 100, ...options.server });
  t.after(() => server.close());
  options.seed?.(server);
  const source = createKubeSource({
    kubeConfig: server.kubeConfig(),
    labelSelector: 'routable=true',
    secretName: 'routing',
    quietWatchTimeoutMs: 1000,
    backoff: { initialMs: 50, maxMs: 500 },
    watchTimeoutSeconds: 60,
    listTimeoutMs: 2000,
    ...options.source,
  });
  t.after(() => source.stop());
  let changes = 0;
  await source.start(() => {
    changes += 1;
    options.onChange?.();
  });
  return {
    server,
    source,
    changes: () => changes,
    podKeys: () => source.snapshot().pods.map(objectKey),
    secretKeys: () => source.snapshot().secrets.map(objectKey),
  };
}

const podWatches = (server: FakeApiServer) => server.requestsTo('/api/v1/pods', 'watch');
const podLists = (server: FakeApiServer) => server.requestsTo('/api/v1/pods', 'list');

test(
  'the initial list has pods by label in all namespaces and secrets by name, keyed by namespace/name, as plain ' +
    'JSON',
  async (t) => {
    const h = await startSource(t, {
      seed: (s) => {
        s.upsert(pod('web', { namespace: 'a', created: '2024-03-04T05:06:07Z' }));
        s.upsert(pod('web', { namespace: 'b' }));
        s.upsert(pod('not-routed', { namespace: 'a', labels: { routable: 'false' } }));
        s.upsert(apiKeySecret('a', 'key-a'));
        s.upsert(apiKeySecret('b', 'key-b'));
        s.upsert(apiKeySecret('a', 'other', 'unrelated'));
      },
    });
    assert.deepEqual(h.podKeys(), ['a/web', 'b/web']);
    assert.deepEqual(h.secretKeys(), ['a/routing', 'b/routing']);
    assert.equal(h.changes(), 0, 'the initial load is what start() resolves with, not a change');
    const [webA] = h.source.snapshot().pods;
    assert.equal(Object.getPrototypeOf(webA), Object.prototype, 'a plain object, not a client model class');
    assert.equal(
      webA?.metadata?.creationTimestamp,
      '2024-03-04T05:06:07Z',
      'the timestamp string exactly as the server sent it',
    );
    // These test pods hold only fields the router reads (an empty annotations map aside).
    const { annotations: _none, ...storedMeta } = h.server.store.get('Pod', 'a', 'web')?.metadata ?? {};
    assert.deepEqual(webA, { ...h.server.store.get('Pod', 'a', 'web'), metadata: storedMeta });
    h.server.upsert(pod('web', { namespace: 'b', ip: '10.0.0.7', annotations: { routingHosts: 'b.test' } }));
    await eventually(() => h.source.snapshot().pods[1]?.status?.podIP === '10.0.0.7', 'the modified pod');
    assert.deepEqual(
      h.source.snapshot().pods[1],
      h.server.store.get('Pod', 'b', 'web'),
      'the same shape from a watch event',
    );
    assert.deepEqual(h.podKeys(), ['a/web', 'b/web'], 'same name in two namespaces: two pods');
  },
);

test('follows ADDED, MODIFIED and DELETED events and calls onChange after each change', async (t) => {
  const h = await startSource(t, { seed: (s) => s.upsert(pod('first')) });
  h.server.upsert(pod('second', { ip: '10.0.0.2' }));
  await eventually(() => h.podKeys().includes('default/second'), 'the added pod');
  const afterAdd = h.changes();
  assert.ok(afterAdd >= 1);

  h.server.upsert(pod('second', { ip: '10.0.0.3' }));
  await eventually(
    () => h.source.snapshot().pods.find((p) => p.metadata?.name === 'second')?.status?.podIP === '10.0.0.3',
    'the modified pod',
  );
  assert.ok(h.changes() > afterAdd);
  const afterModify = h.changes();

  h.server.remove('Pod', 'default', 'first');
  h.server.upsert(apiKeySecret('default', 'k'));
  await eventually(
    () => !h.podKeys().includes('default/first') && h.secretKeys().length === 1,
    'the deletion and the secret',
  );
  assert.ok(h.changes() >= afterModify + 2);
  assert.deepEqual(h.podKeys(), ['default/second']);
});

test('a pod whose labels stop matching disappears, and comes back when they match again', async (t) => {
  const h = await startSource(t, { seed: (s) => s.upsert(pod('p')) });
  h.server.upsert(pod('p', { labels: { routable: 'no' } }));
  await eventually(() => h.podKeys().length === 0, 'the pod to leave the selection');
  h.server.upsert(pod('p', { labels: { routable: 'true', extra: 'x' } }));
  await eventually(() => h.podKeys().length === 1, 'the pod to come back');
  assert.deepEqual(h.source.snapshot().pods[0]?.metadata?.labels, { routable: 'true', extra: 'x' });
});

test('the API server selects the secret by name and the pods by label, on the list and on the watch', async (t) => {
  const h = await startSource(t, { seed: (s) => s.upsert(apiKeySecret('a', 'k')) });
  h.server.upsert(apiKeySecret('a', 'k2', 'unrelated'));
  h.server.upsert(apiKeySecret('b', 'k3'));
  await eventually(() => h.secretKeys().length === 2, 'the second secret');
  assert.deepEqual(h.secretKeys(), ['a/routing', 'b/routing']);

  const secretRequests = h.server.requests.filter((r) => r.path === '/api/v1/secrets');
  assert.ok(secretRequests.some((r) => !r.watch) && secretRequests.some((r) => r.watch), 'both a list and a watch');
  for (const r of secretRequests)
    assert.match(r.rawQuery, /(^|&)fieldSelector=metadata\.name%3Drouting(&|$)/, r.rawQuery);
  const podRequests = h.server.requests.filter((r) => r.path === '/api/v1/pods');
  assert.ok(podRequests.some((r) => !r.watch) && podRequests.some((r) => r.watch), 'both a list and a watch');
  for (const r of podRequests) assert.equal(r.query.labelSelector, 'routable=true');
  for (const r of [...podRequests, ...secretRequests].filter((x) => x.watch)) {
    assert.equal(r.query.allowWatchBookmarks, 'true');
    assert.equal(r.query.timeoutSeconds, '60');
  }
  assert.equal(h.server.requests.filter((r) => r.path !== '/api/v1/secrets' && r.path !== '/api/v1/pods').length, 0);
});

test(
  'after dropped streams it resumes from the last ' + 'resourceVersion, bookmarks included, without listing again',
  async (t) => {
    const h = await startSource(t, { seed: (s) => s.upsert(pod('a')) });
    // A change the pod watch does not see moves the version on; only a bookmark tells the source.
    h.server.upsert(pod('unrouted', { labels: {} }));
    const bookmarked = h.server.resourceVersion;
    await eventually(() => h.source.status().pods.resourceVersion === bookmarked, 'a bookmark with the new version');

    h.server.dropStreams();
    h.server.upsert(pod('during-gap')); // made before the source can reconnect
    await eventually(() => h.podKeys().includes('default/during-gap'), 'the change made during the gap');

    const watches = podWatches(h.server);
    assert.equal(watches.length, 2);
    assert.equal(watches[1]?.query.resourceVersion, bookmarked);
    assert.equal(podLists(h.server).length, 1);
    assert.ok(h.source.status().pods.restarts >= 1);
  },
);

test('on 410 Gone it lists again and replaces the set: an object deleted during the gap disappears', async (t) => {
  const h = await startSource(t, { seed: (s) => [s.upsert(pod('stays')), s.upsert(pod('goes'))] });
  h.server.dropStreams();
  h.server.remove('Pod', 'default', 'goes');
  h.server.upsert(pod('new'));
  h.server.compact(); // the DELETED event can no longer be replayed
  await eventually(() => h.podKeys().join() === 'default/new,default/stays', 'the relisted pods');

  assert.ok(
    podWatches(h.server).some((r) => r.watchErrorCode === 410),
    'a watch was answered 410',
  );
  assert.equal(podLists(h.server).length, 2);
  assert.equal(h.source.status().pods.relists, 1);
  assert.ok(h.changes() >= 1);
});

test('on a 410 ERROR event it relists at once, without waiting for the stream to end', async (t) => {
  // The server keeps the stream open after the 410 and the quiet timeout is long, so only
  // acting on the event itself can bring the relist within the wait below.
  const h = await startSource(t, {
    server: { holdOpenAfterGone: true },
    source: { quietWatchTimeoutMs: 60_000 },
    seed: (s) => s.upsert(pod('goes')),
  });
  h.server.dropStreams();
  h.server.remove('Pod', 'default', 'goes');
  h.server.compact();
  await eventually(() => h.podKeys().length === 0, 'the relist', 5_000);
  assert.equal(podLists(h.server).length, 2);
});

test('start keeps trying while the list is refused, then loads', async (t) => {
  const server = await FakeApiServer.start();
  t.after(() => server.close());
  server.upsert(pod('a'));
  server.failRequests(403, { requests: 'list', count: 3 });
  const source = createKubeSource({
    kubeConfig: server.kubeConfig(),
    labelSelector: 'routable=true',
    secretName: 'routing',
    backoff: { initialMs: 20, maxMs: 100 },
  });
  t.after(() => source.stop());
  await source.start(() => {});
  assert.deepEqual(source.snapshot().pods.map(objectKey), ['default/a']);
  const lists = server.requests.filter((r) => !r.watch);
  assert.equal(lists.filter((r) => r.status === 403).length, 3);
  assert.equal(lists.filter((r) => r.status === 200).length, 2, 'one successful list per collection');
});

test('500 and 403 answers: it backs off, keeps the last objects, and recovers', async (t) => {
  const h = await startSource(t, { seed: (s) => s.upsert(pod('kept')) });
  h.server.failRequests(500);
  h.server.dropStreams();
  await delay(1000);
  // Backing off, not spinning: with waits of 25..50, 50..100, 100..200 ms and so on up
  // to 500 ms, a second holds at most 8 attempts; a slower machine only makes fewer.
  const refused = podWatches(h.server).filter((r) => r.status === 500).length;
  assert.ok(refused >= 2 && refused <= 9, `${refused} refused watches in a second`);
  assert.deepEqual(h.podKeys(), ['default/kept']);
  assert.equal(h.source.status().connected, false);
  assert.match(h.source.status().pods.lastError ?? '', /500/);

  h.server.clearFaults();
  h.server.failRequests(403);
  await eventually(() => podWatches(h.server).filter((r) => r.status === 403).length >= 2, 'two forbidden watches');
  assert.match(h.source.status().pods.lastError ?? '', /403/);

  h.server.clearFaults();
  h.server.upsert(pod('after'));
  await eventually(() => h.podKeys().includes('default/after'), 'the change after recovery');
  await eventually(() => h.source.status().connected, 'connected again');
  assert.equal(podLists(h.server).length, 1, 'resumed from its resourceVersion, no relist needed');
});

for (const mode of ['after-headers', 'before-headers'] as const) {
  test(`a stalled watch (${mode}) is restarted after the quiet timeout`, async (t) => {
    const h = await startSource(t, { seed: (s) => s.upsert(pod('a')) });
    h.server.stallWatches(mode);
    h.server.dropStreams();
    await eventually(() => h.server.openWatchCount === 2, 'both watches to reconnect into the stall');
    const stalledWatches = podWatches(h.server).length;
    h.server.stallWatches(false);
    h.server.upsert(pod('after-stall'));
    await eventually(() => h.podKeys().includes('default/after-stall'), 'the change after the stall', 5_000);

    assert.equal(podWatches(h.server).length, stalledWatches + 1);
    assert.match(h.source.status().pods.lastError ?? '', /nothing received for 1000 ms/);
    // The hung connections were cut, not left behind: one open watch per collection.
    await eventually(() => h.server.openWatchCount === 2, 'the stalled connections to be closed');
  });
}

test(
  'while the API server is away it keeps the last objects, ' + 'and catches up when it is back on the same port',
  async (t) => {
    const h = await startSource(t, {
      seed: (s) => [s.upsert(pod('a')), s.upsert(pod('b')), s.upsert(apiKeySecret('default', 'k'))],
    });
    await h.server.stop();
    await eventually(() => h.source.status().pods.lastError?.includes('ECONNREFUSED'), 'connection refused');
    await delay(600); // a few backoff rounds
    assert.deepEqual(h.podKeys(), ['default/a', 'default/b']);
    assert.deepEqual(h.secretKeys(), ['default/routing']);
    assert.equal(h.source.status().connected, false);

    h.server.remove('Pod', 'default', 'a'); // changes while the router cannot see them
    h.server.upsert(pod('c'));
    await h.server.restart();
    await eventually(() => h.podKeys().join() === 'default/b,default/c', 'the changes made during the outage', 5_000);
    await eventually(() => h.source.status().connected, 'connected again');
  },
);

test('a throwing onChange crashes nothing: events and relists keep being applied', async (t) => {
  let calls = 0;
  const h = await startSource(t, {
    seed: (s) => s.upsert(pod('a')),
    onChange: () => {
      calls += 1;
      throw new Error('listener bug');
    },
  });
  h.server.upsert(pod('b'));
  h.server.upsert(pod('c'));
  await eventually(() => h.podKeys().length === 3, 'both events applied');
  assert.ok(calls >= 2);
  assert.equal(h.source.status().pods.lastError, null, 'a listener error is not an API error');
  assert.equal(h.source.status().pods.restarts, 0, 'nor does it restart the watch');

  h.server.dropStreams();
  h.server.remove('Pod', 'default', 'a');
  h.server.compact();
  await eventually(() => h.podKeys().join() === 'default/b,default/c', 'the relist applied');
  assert.doesNotMatch(h.source.status().pods.lastError ?? '', /listener bug/);
});

test('stop closes the watches and no onChange follows', async (t) => {
  const h = await startSource(t, { seed: (s) => s.upsert(pod('a')) });
  await eventually(() => h.server.openWatchCount === 2, 'both watches open');
  await h.source.stop();
  await eventually(() => h.server.openWatchCount === 0, 'the watches to close');
  const before = h.changes();
  h.server.upsert(pod('late'));
  await delay(200);
  assert.equal(h.changes(), before);
  assert.deepEqual(h.podKeys(), ['default/a']);
});

test(
  'start rejects at once when the kubeconfig names no ' + 'cluster, and when stopped before the first list',
  async (t) => {
    const { KubeConfig } = await import('@kubernetes/client-node');
    const empty = createKubeSource({ kubeConfig: new KubeConfig(), labelSelector: 'a=b', secretName: 's' });
    await assert.rejects(
      empty.start(() => {}),
      /no current cluster/,
    );

    const server = await FakeApiServer.start();
    t.after(() => server.close());
    server.failRequests(500, { requests: 'list' });
    const source = createKubeSource({
      kubeConfig: server.kubeConfig(),
      labelSelector: 'a=b',
      secretName: 's',
      backoff: { initialMs: 20, maxMs: 50 },
    });
    const starting = source.start(() => {});
    await eventually(() => server.requests.length >= 2, 'list attempts');
    await source.stop();
    await assert.rejects(starting, /stopped before/);
  },
);

test(
  'loadKubeConfig: in-cluster when the token exists, else ' + 'KUBECONFIG, else ~/.kube/config, else an error',
  async (t) => {
    const server = await FakeApiServer.start();
    t.after(() => server.close());
    const dir = mkdtempSync(join(tmpdir(), 'kube-config-test-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const noToken = join(dir, 'no-token');

    const fromEnv = loadKubeConfig({
      env: { KUBECONFIG: server.kubeConfigFile() },
      serviceAccountToken: noToken,
      home: dir,
    });
    assert.equal(fromEnv.getCurrentCluster()?.server, server.url);

    mkdirSync(join(dir, '.kube'));
    writeFileSync(join(dir, '.kube', 'config'), server.kubeConfigYaml().replace(server.url, 'https://127.0.0.1:1'));
    const fromHome = loadKubeConfig({ env: {}, serviceAccountToken: noToken, home: dir });
    assert.equal(fromHome.getCurrentCluster()?.server, 'https://127.0.0.1:1');

    const token = join(dir, 'token');
    writeFileSync(token, 'sa-token');
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    process.env.KUBERNETES_SERVICE_HOST = '10.96.0.1';
    process.env.KUBERNETES_SERVICE_PORT = '443';
    try {
      const inCluster = loadKubeConfig({
        env: { KUBECONFIG: server.kubeConfigFile() },
        serviceAccountToken: token,
        home: dir,
      });
      assert.equal(inCluster.getCurrentCluster()?.server, 'https://10.96.0.1:443');
    } finally {
      for (const [k, v] of [
        ['KUBERNETES_SERVICE_HOST', saved.host],
        ['KUBERNETES_SERVICE_PORT', saved.port],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }

    assert.throws(
      () => loadKubeConfig({ env: {}, serviceAccountToken: noToken, home: join(dir, 'nowhere') }),
      /no Kubernetes configuration/,
    );
  },
);

// ---- big clusters: pages, slim objects, and a bounded request rate -----------------------

type SourceHarness = Awaited<ReturnType<typeof startSource>>;

/** Of a listed pod and Secret, only the fields the route table reads are kept. */
function assertKeepsWhatRoutingReads(h: SourceHarness): void {
  const server = h.server.store.get('Pod', 'team-0', clusterPod(0).metadata?.name as string) as Pod;
  const kept = h.source.snapshot().pods.find((p) => p.metadata?.uid === server.metadata?.uid);
  assert.deepEqual(kept, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: server.metadata?.name,
      namespace: 'team-0',
      uid: server.metadata?.uid,
      resourceVersion: server.metadata?.resourceVersion,
      creationTimestamp: '2024-05-01T10:00:00Z',
      labels: server.metadata?.labels,
      annotations: { routingHosts: 'app-0.big.test', routingPaths: '8080:/' },
    },
    spec: {
      containers: [
        {
          name: 'app',
          ports: [
            { name: 'http', containerPort: 8080, protocol: 'TCP' },
            { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
          ],
        },
      ],
    },
    status: { phase: 'Running', podIP: server.status?.podIP, conditions: [{ type: 'Ready', status: 'True' }] },
  });
  assert.ok(JSON.stringify(server).length > 4 * JSON.stringify(kept).length, 'the server sends far more than is kept');
  for (const absent of ['managedFields', 'volumes', 'containerStatuses', 'ownerReferences', 'env']) {
    assert.ok(JSON.stringify(server).includes(`"${absent}"`) && !JSON.stringify(kept).includes(`"${absent}"`), absent);
  }
  assert.deepEqual(h.source.snapshot().secrets[0], {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: 'routing',
      namespace: 'team-1',
      uid: h.server.store.get('Secret', 'team-1', 'routing')?.metadata?.uid,
      resourceVersion: h.server.store.get('Secret', 'team-1', 'routing')?.metadata?.resourceVersion,
      creationTimestamp: h.server.store.get('Secret', 'team-1', 'routing')?.metadata?.creationTimestamp,
    },
    data: { 'api-key': 'aw==' },
  });
}

test(
  'lists come in pages of 500, and each object keeps only what ' + 'the route table reads, from a list or a watch',
  async (t) => {
    const h = await startSource(t, {
      seed: (s) => {
        for (let i = 0; i < 2_500; i++) s.upsert(clusterPod(i));
        s.upsert(pod('unrouted', { labels: { routable: 'false' } }));
        s.upsert({
          ...apiKeySecret('team-1', 'k'),
          metadata: { name: 'routing', namespace: 'team-1', labels: { a: 'b' }, annotations: { note: 'x' } },
          data: { 'api-key': 'aw==', other: 'c2VjcmV0' },
          type: 'Opaque',
        });
      },
    });
    assert.equal(h.podKeys().length, 2_500);
    const pages = podLists(h.server);
    assert.deepEqual(
      pages.map((r) => [r.query.limit, r.items]),
      [
        ['500', 500],
        ['500', 500],
        ['500', 500],
        ['500', 500],
        ['500', 500],
      ],
    );
    assert.deepEqual(
      pages.map((r) => r.query.continue !== undefined),
      [false, true, true, true, true],
    );
    assert.ok(
      pages.every((r) => r.query.resourceVersion === undefined),
      'the most recent state, never "any" (0) which may be older than what a watch showed',
    );
    assert.equal(h.source.status().pods.listPages, 5);

    assertKeepsWhatRoutingReads(h);

    // From a watch event: cut down the same way, the deletion timestamp kept.
    const terminating = clusterPod(7);
    terminating.metadata = { ...terminating.metadata, deletionTimestamp: '2024-05-02T00:00:00Z' };
    h.server.upsert(terminating);
    const byWatch = await eventually(
      () =>
        h.source
          .snapshot()
          .pods.find((p) => p.metadata?.name === terminating.metadata?.name && p.metadata?.deletionTimestamp),
      'the watch event',
    );
    assert.deepEqual(Object.keys(byWatch.metadata ?? {}).sort(), [
      'annotations',
      'creationTimestamp',
      'deletionTimestamp',
      'labels',
      'name',
      'namespace',
      'resourceVersion',
      'uid',
    ]);
    assert.ok(!JSON.stringify(byWatch).includes('managedFields') && !JSON.stringify(byWatch).includes('volumes'));
  },
);

test('the pages of a list share one connection', async (t) => {
  const server = await FakeApiServer.start();
  t.after(() => server.close());
  for (let i = 0; i < 1_200; i++) server.upsert(clusterPod(i));
  const source = createKubeSource({
    kubeConfig: server.kubeConfig(),
    labelSelector: 'routable=true',
    secretName: 'routing',
    listPageSize: 100,
  });
  t.after(() => source.stop());
  await source.start(() => {});
  assert.equal(podLists(server).length, 12);
  // 12 pages of pods, 1 of secrets, 2 watches: 4 connections, not 15.
  await eventually(() => server.openWatchCount === 2, 'both watches');
  assert.equal(server.connectionsAccepted, 4);
});

test('a list cut off in the middle of a page fails and is listed again, whole', async (t) => {
  const h = await startSource(t, {
    seed: (s) => {
      for (let i = 0; i < 50; i++) s.upsert(clusterPod(i));
      s.cutLists(1);
    },
  });
  assert.equal(h.podKeys().length, 50);
  assert.equal(
    h.server.listRequests().filter((r) => r.path === '/api/v1/pods').length,
    2,
    'the cut list, then a whole one',
  );
  assert.match(h.source.status().pods.lastError ?? '', /list failed/);
});

test('the annotations and Secret field kept are the ones configured', async (t) => {
  const h = await startSource(t, {
    source: { keep: { podAnnotations: ['example.com/hosts'], secretField: 'token' } },
    seed: (s) => {
      s.upsert(pod('p', { annotations: { 'example.com/hosts': 'a.test', routingHosts: 'b.test' } }));
      s.upsert({ ...apiKeySecret('default', 'k'), data: { token: 'dA==', 'api-key': 'aw==' } });
    },
  });
  assert.deepEqual(h.source.snapshot().pods[0]?.metadata?.annotations, { 'example.com/hosts': 'a.test' });
  assert.deepEqual(h.source.snapshot().secrets[0]?.data, { token: 'dA==' });
});

test('a continue token that expires midway starts the list over: the set is the state of the new list', async (t) => {
  const seedPods = (s: FakeApiServer) => {
    for (let i = 0; i < 2_500; i++) s.upsert(clusterPod(i));
  };
  const server = await FakeApiServer.start({ bookmarkIntervalMs: 100 });
  t.after(() => server.close());
  seedPods(server);
  const removed = clusterPod(2_000).metadata as { namespace: string; name: string };
  server.listPageHook = (page) => {
    // After the second page of the first pod list: tokens expire, and the cluster changes.
    if (page.continued && server.listRequests().filter((r) => r.path === '/api/v1/pods').length === 2) {
      server.expireContinueTokens();
      server.remove('Pod', removed.namespace, removed.name);
      server.upsert(clusterPod(2_500));
    }
  };
  const source = createKubeSource({
    kubeConfig: server.kubeConfig(),
    labelSelector: 'routable=true',
    secretName: 'routing',
    backoff: { initialMs: 50, maxMs: 500 },
  });
  t.after(() => source.stop());
  await source.start(() => {});
  const pages = podLists(server);
  assert.deepEqual(
    pages.map((r) => [r.query.continue === undefined ? 'first' : 'continued', r.status]),
    [
      ['first', 200],
      ['continued', 200],
      ['continued', 410],
      ['first', 200],
      ['continued', 200],
      ['continued', 200],
      ['continued', 200],
      ['continued', 200],
    ],
  );
  const keys = source.snapshot().pods.map(objectKey);
  assert.equal(keys.length, 2_500);
  assert.ok(!keys.includes(`${removed.namespace}/${removed.name}`), 'the pod deleted during the first list is gone');
  assert.ok(keys.includes(objectKey(clusterPod(2_500))), 'the pod added during the first list is there');
  assert.equal(source.status().pods.listRestarts, 1);
  assert.equal(source.status().pods.relists, 0, 'one list, started over; not a relist');
});

test('when every watch is answered 410 at once, it backs off between lists instead of listing in a loop', async (t) => {
  const h = await startSource(t, {
    source: { backoff: { initialMs: 100, maxMs: 800 } },
    seed: (s) => s.upsert(pod('a')),
  });
  h.server.goneWatches();
  h.server.dropStreams();
  const listsBefore = podLists(h.server).length;
  await delay(2_000);
  // Waits of 50..100, 100..200, 200..400, 400..800 ms, then 400..800 ms: at most 7 lists in 2 s.
  const lists = podLists(h.server).length - listsBefore;
  assert.ok(lists >= 2 && lists <= 7, `${lists} lists in 2 s`);
  h.server.clearFaults();
  h.server.upsert(pod('b'));
  await eventually(() => h.podKeys().includes('default/b'), 'the change once watches work again', 5_000);
});

test(
  'watches that end cleanly right after their first event are ' + 'restarted no closer than half the initial backoff',
  async (t) => {
    const h = await startSource(t, {
      server: { bookmarkIntervalMs: 10 },
      source: { backoff: { initialMs: 400, maxMs: 800 } },
      seed: (s) => s.upsert(pod('a')),
    });
    h.server.shortWatches(true);
    h.server.dropStreams();
    const from = podWatches(h.server).length;
    await delay(2_000);
    const starts = podWatches(h.server)
      .slice(from)
      .map((r) => r.at);
    // Each of these watches delivered a bookmark, so it counts as working and resets the
    // backoff: only the spacing of attempts (200 ms here) keeps the rate down.
    assert.ok(starts.length >= 3 && starts.length <= 11, `${starts.length} pod watches in 2 s`);
    // Arrival times at the server vary by the client's connection set-up (tens of ms).
    const gaps = starts.slice(1).map((at, i) => at - (starts[i] as number));
    assert.ok(
      gaps.every((g) => g >= 150),
      `gaps between watch starts: ${gaps.join(', ')} ms`,
    );
    h.server.clearFaults();
    h.server.upsert(pod('b'));
    await eventually(() => h.podKeys().includes('default/b'), 'the change once watches stay open');
  },
);
