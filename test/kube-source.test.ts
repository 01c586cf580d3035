import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKubeSource, loadKubeConfig, type KubeSource, type KubeSourceOptions } from '../src/sources/kube-source.js';
import { backoffDelayMs } from '../src/sources/kube-watch.js';
import { objectKey } from '../src/core/kube-objects.js';
import { FakeApiServer, type FakeApiServerOptions } from './support/fake-api-server.js';
import { delay, eventually } from './support/eventually.js';
import { apiKeySecret, pod } from './support/objects.js';

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
  options: { server?: FakeApiServerOptions; source?: Partial<KubeSourceOptions>; seed?: (s: FakeApiServer) => void; onChange?: () => void } = {},
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

test('backoff doubles from the initial wait up to the maximum, jittered within the upper half', () => {
  const policy = { initialMs: 100, maxMs: 1000 };
  assert.deepEqual([1, 2, 3, 4, 5, 9].map((n) => backoffDelayMs(n, policy, () => 1)), [100, 200, 400, 800, 1000, 1000]);
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => backoffDelayMs(n, policy, () => 0)), [50, 100, 200, 400, 500]);
  for (let n = 1; n < 12; n++) {
    const d = backoffDelayMs(n, policy);
    const ceiling = Math.min(1000, 100 * 2 ** (n - 1));
    assert.ok(d >= ceiling / 2 && d <= ceiling, `attempt ${n}: ${d}`);
  }
});

test('the initial list has pods by label in all namespaces and secrets by name, keyed by namespace/name, as plain JSON', async (t) => {
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
  assert.equal(webA?.metadata?.creationTimestamp, '2024-03-04T05:06:07Z', 'the timestamp string exactly as the server sent it');
  assert.deepEqual(webA, h.server.store.get('Pod', 'a', 'web'));
  h.server.upsert(pod('web', { namespace: 'b', ip: '10.0.0.7' }));
  await eventually(() => h.source.snapshot().pods[1]?.status?.podIP === '10.0.0.7', 'the modified pod');
  assert.deepEqual(h.source.snapshot().pods[1], h.server.store.get('Pod', 'b', 'web'), 'the same shape from a watch event');
  assert.deepEqual(h.podKeys(), ['a/web', 'b/web'], 'same name in two namespaces: two pods');

});

test('follows ADDED, MODIFIED and DELETED events and calls onChange after each change', async (t) => {
  const h = await startSource(t, { seed: (s) => s.upsert(pod('first')) });
  h.server.upsert(pod('second', { ip: '10.0.0.2' }));
  await eventually(() => h.podKeys().includes('default/second'), 'the added pod');
  const afterAdd = h.changes();
  assert.ok(afterAdd >= 1);

  h.server.upsert(pod('second', { ip: '10.0.0.3' }));
  await eventually(() => h.source.snapshot().pods.find((p) => p.metadata?.name === 'second')?.status?.podIP === '10.0.0.3', 'the modified pod');
  assert.ok(h.changes() > afterAdd);
  const afterModify = h.changes();

  h.server.remove('Pod', 'default', 'first');
  h.server.upsert(apiKeySecret('default', 'k'));
  await eventually(() => !h.podKeys().includes('default/first') && h.secretKeys().length === 1, 'the deletion and the secret');
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
  for (const r of secretRequests) assert.match(r.rawQuery, /(^|&)fieldSelector=metadata\.name%3Drouting(&|$)/, r.rawQuery);
  const podRequests = h.server.requests.filter((r) => r.path === '/api/v1/pods');
  assert.ok(podRequests.some((r) => !r.watch) && podRequests.some((r) => r.watch), 'both a list and a watch');
  for (const r of podRequests) assert.equal(r.query.labelSelector, 'routable=true');
  for (const r of [...podRequests, ...secretRequests].filter((x) => x.watch)) {
    assert.equal(r.query.allowWatchBookmarks, 'true');
    assert.equal(r.query.timeoutSeconds, '60');
  }
  assert.equal(h.server.requests.filter((r) => r.path !== '/api/v1/secrets' && r.path !== '/api/v1/pods').length, 0);
});

test('after dropped streams it resumes from the last resourceVersion, bookmarks included, without listing again', async (t) => {
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
});

test('on 410 Gone it lists again and replaces the set: an object deleted during the gap disappears', async (t) => {
  const h = await startSource(t, { seed: (s) => [s.upsert(pod('stays')), s.upsert(pod('goes'))] });
  h.server.dropStreams();
  h.server.remove('Pod', 'default', 'goes');
  h.server.upsert(pod('new'));
  h.server.compact(); // the DELETED event can no longer be replayed
  await eventually(() => h.podKeys().join() === 'default/new,default/stays', 'the relisted pods');

  assert.ok(podWatches(h.server).some((r) => r.watchErrorCode === 410), 'a watch was answered 410');
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

test('while the API server is away it keeps the last objects, and catches up when it is back on the same port', async (t) => {
  const h = await startSource(t, { seed: (s) => [s.upsert(pod('a')), s.upsert(pod('b')), s.upsert(apiKeySecret('default', 'k'))] });
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
});

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

test('start rejects at once when the kubeconfig names no cluster, and when stopped before the first list', async (t) => {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const empty = createKubeSource({ kubeConfig: new KubeConfig(), labelSelector: 'a=b', secretName: 's' });
  await assert.rejects(empty.start(() => {}), /no current cluster/);

  const server = await FakeApiServer.start();
  t.after(() => server.close());
  server.failRequests(500, { requests: 'list' });
  const source = createKubeSource({ kubeConfig: server.kubeConfig(), labelSelector: 'a=b', secretName: 's', backoff: { initialMs: 20, maxMs: 50 } });
  const starting = source.start(() => {});
  await eventually(() => server.requests.length >= 2, 'list attempts');
  await source.stop();
  await assert.rejects(starting, /stopped before/);
});

test('loadKubeConfig: in-cluster when the token exists, else KUBECONFIG, else ~/.kube/config, else an error', async (t) => {
  const server = await FakeApiServer.start();
  t.after(() => server.close());
  const dir = mkdtempSync(join(tmpdir(), 'kube-config-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const noToken = join(dir, 'no-token');

  const fromEnv = loadKubeConfig({ env: { KUBECONFIG: server.kubeConfigFile() }, serviceAccountToken: noToken, home: dir });
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
    const inCluster = loadKubeConfig({ env: { KUBECONFIG: server.kubeConfigFile() }, serviceAccountToken: token, home: dir });
    assert.equal(inCluster.getCurrentCluster()?.server, 'https://10.96.0.1:443');
  } finally {
    for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }

  assert.throws(() => loadKubeConfig({ env: {}, serviceAccountToken: noToken, home: join(dir, 'nowhere') }), /no Kubernetes configuration/);
});
