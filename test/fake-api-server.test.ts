import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { CoreV1Api, KubeConfig, Watch } from '@kubernetes/client-node';
import { FakeApiServer } from './support/fake-api-server.js';
import { testCertificates } from './support/tls.js';
import { delay, eventually } from './support/eventually.js';
import { apiKeySecret, pod } from './support/objects.js';

// The fake API server is checked with the real @kubernetes/client-node wherever the router
// uses it, so a fake that drifted from what the client expects fails here first.

interface Received {
  type: string;
  name: string | undefined;
  namespace: string | undefined;
  resourceVersion: string | undefined;
  object: { code?: number; metadata?: { labels?: Record<string, string> } };
}

interface ClientStream {
  events: Received[];
  /** Settles with the error passed to done (null for a clean end). */
  ended: Promise<unknown>;
  hasEnded(): boolean;
  answered: Promise<AbortController>;
}

function watchWithClient(kc: KubeConfig, path: string, query: Record<string, string | number | boolean>): ClientStream {
  const events: Received[] = [];
  let endedFlag = false;
  let resolveEnded!: (err: unknown) => void;
  const ended = new Promise<unknown>((resolve) => (resolveEnded = resolve));
  const answered = new Watch(kc).watch(
    path,
    query,
    (type, object) => {
      events.push({
        type,
        name: object?.metadata?.name,
        namespace: object?.metadata?.namespace,
        resourceVersion: object?.metadata?.resourceVersion,
        object,
      });
    },
    (err) => {
      endedFlag = true;
      resolveEnded(err);
    },
  );
  return { events, ended, hasEnded: () => endedFlag, answered };
}

async function withServer(
  fn: (server: FakeApiServer, kc: KubeConfig) => Promise<void>,
  options: Parameters<typeof FakeApiServer.start>[0] = {},
): Promise<void> {
  const server = await FakeApiServer.start(options);
  try {
    await fn(server, server.kubeConfig());
  } finally {
    await server.close();
  }
}

const names = (events: Received[]): string[] => events.map((e) => `${e.type} ${e.namespace}/${e.name}`);

test(
  'lists over verified TLS with the token, carrying the list resourceVersion and selecting by label on the ' + 'server',
  async () => {
    await withServer(async (server, kc) => {
      server.upsert(pod('web', { namespace: 'a' }));
      server.upsert(pod('web', { namespace: 'b' }));
      server.upsert(pod('other', { namespace: 'a', labels: { routable: 'no' } }));
      const api = kc.makeApiClient(CoreV1Api);

      const all = await api.listPodForAllNamespaces({ labelSelector: 'routable=true' });
      assert.equal(all.metadata?.resourceVersion, server.resourceVersion);
      assert.deepEqual(
        all.items.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`),
        ['a/web', 'b/web'],
      );

      const inA = await api.listNamespacedPod({ namespace: 'a' });
      assert.deepEqual(inA.items.map((p) => p.metadata?.name).sort(), ['other', 'web']);

      const last = server.requestsTo('/api/v1/namespaces/a/pods', 'list');
      assert.equal(last.length, 1);
      assert.equal(server.requestsTo('/api/v1/pods', 'list')[0]?.rawQuery, 'labelSelector=routable%3Dtrue');
    });
  },
);

test('refuses a request without the bearer token, and a client that does not trust the CA cannot connect', async () => {
  await withServer(async (server) => {
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const req = request(`${server.url}/api/v1/pods`, { ca: testCertificates().caCert }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 401);

    const untrusting = new KubeConfig();
    untrusting.loadFromOptions({
      clusters: [{ name: 'c', server: server.url, skipTLSVerify: false }],
      users: [{ name: 'u', token: server.token }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    await assert.rejects(untrusting.makeApiClient(CoreV1Api).listPodForAllNamespaces(), /certificate/);
  });
});

test('a watch from the list resourceVersion streams ADDED, MODIFIED and DELETED with increasing versions', async () => {
  await withServer(async (server, kc) => {
    server.upsert(pod('before'));
    const list = await kc.makeApiClient(CoreV1Api).listPodForAllNamespaces({});
    const stream = watchWithClient(kc, '/api/v1/pods', { resourceVersion: list.metadata?.resourceVersion as string });
    await stream.answered;

    server.upsert(pod('p1'));
    server.upsert(pod('p1', { ip: '10.0.0.9' }));
    server.remove('Pod', 'default', 'p1');
    await eventually(() => stream.events.length >= 3, 'three events');
    assert.deepEqual(names(stream.events), ['ADDED default/p1', 'MODIFIED default/p1', 'DELETED default/p1']);
    const versions = stream.events.map((e) => Number(e.resourceVersion));
    assert.deepEqual(
      versions,
      [...versions].sort((x, y) => x - y),
    );
    assert.equal(new Set(versions).size, 3);
    assert.equal(String(versions[2]), server.resourceVersion);
    (await stream.answered).abort();
  });
});

test(
  'an object that stops matching the label selector is DELETED for the watcher, one that starts matching is ' + 'ADDED',
  async () => {
    await withServer(async (server, kc) => {
      server.upsert(pod('p', { labels: { routable: 'true' } }));
      const stream = watchWithClient(kc, '/api/v1/pods', {
        labelSelector: 'routable=true',
        resourceVersion: server.resourceVersion,
      });
      await stream.answered;

      server.upsert(pod('p', { labels: { routable: 'false' } }));
      server.upsert(pod('p', { labels: { routable: 'false', other: 'x' } })); // not matching before or after: nothing
      server.upsert(pod('p', { labels: { routable: 'true' } }));
      await eventually(() => stream.events.length >= 2, 'two events');
      await delay(50);
      assert.deepEqual(names(stream.events), ['DELETED default/p', 'ADDED default/p']);
      assert.deepEqual(stream.events[0]?.object.metadata?.labels, { routable: 'false' });
      (await stream.answered).abort();
    });
  },
);

test('field selectors on metadata.name and metadata.namespace select on list and watch', async () => {
  await withServer(async (server, kc) => {
    server.upsert(apiKeySecret('a', 'k1'));
    server.upsert(apiKeySecret('b', 'k2'));
    server.upsert(apiKeySecret('a', 'k3', 'unrelated'));
    const api = kc.makeApiClient(CoreV1Api);

    const byName = await api.listSecretForAllNamespaces({ fieldSelector: 'metadata.name=routing' });
    assert.deepEqual(
      byName.items.map((s) => `${s.metadata?.namespace}/${s.metadata?.name}`),
      ['a/routing', 'b/routing'],
    );
    const both = await api.listSecretForAllNamespaces({ fieldSelector: 'metadata.name=routing,metadata.namespace!=a' });
    assert.deepEqual(
      both.items.map((s) => `${s.metadata?.namespace}/${s.metadata?.name}`),
      ['b/routing'],
    );
    await assert.rejects(
      api.listSecretForAllNamespaces({ fieldSelector: 'data.key=x' }),
      (err: { code?: number }) => err.code === 400,
    );

    const stream = watchWithClient(kc, '/api/v1/secrets', {
      fieldSelector: 'metadata.name=routing',
      resourceVersion: server.resourceVersion,
    });
    await stream.answered;
    server.upsert(apiKeySecret('c', 'k4', 'unrelated'));
    server.upsert(apiKeySecret('c', 'k5'));
    await eventually(() => stream.events.length >= 1, 'an event');
    await delay(50);
    assert.deepEqual(names(stream.events), ['ADDED c/routing']);
    (await stream.answered).abort();
  });
});

test(
  'a watch without a resourceVersion starts with the current objects as ADDED; one with a version replays what ' +
    'changed since',
  async () => {
    await withServer(async (server, kc) => {
      server.upsert(pod('a'));
      const mark = server.resourceVersion;
      server.upsert(pod('b'));
      server.remove('Pod', 'default', 'a');

      const fresh = watchWithClient(kc, '/api/v1/pods', {});
      const replay = watchWithClient(kc, '/api/v1/pods', { resourceVersion: mark });
      await eventually(() => fresh.events.length >= 1 && replay.events.length >= 2, 'initial events');
      await delay(50);
      assert.deepEqual(names(fresh.events), ['ADDED default/b']);
      assert.deepEqual(names(replay.events), ['ADDED default/b', 'DELETED default/a']);
      (await fresh.answered).abort();
      (await replay.answered).abort();
    });
  },
);

test('bookmarks carry the current resourceVersion and come only when asked for', async () => {
  await withServer(
    async (server, kc) => {
      server.upsert(pod('a'));
      const withBookmarks = watchWithClient(kc, '/api/v1/pods', {
        resourceVersion: server.resourceVersion,
        allowWatchBookmarks: true,
      });
      const without = watchWithClient(kc, '/api/v1/pods', { resourceVersion: server.resourceVersion });
      await Promise.all([withBookmarks.answered, without.answered]);
      server.upsert(pod('elsewhere', { labels: {} }));
      await eventually(() => withBookmarks.events.filter((e) => e.type === 'BOOKMARK').length >= 2, 'two bookmarks');
      assert.equal(withBookmarks.events.at(-1)?.resourceVersion, server.resourceVersion);
      assert.deepEqual(
        without.events.map((e) => e.type),
        ['ADDED'],
      );
      (await withBookmarks.answered).abort();
      (await without.answered).abort();
    },
    { bookmarkIntervalMs: 50 },
  );
});

test('after compaction, a watch from an older version gets ERROR 410 and then the end of the stream', async () => {
  await withServer(async (server, kc) => {
    server.upsert(pod('a'));
    const old = server.resourceVersion;
    server.upsert(pod('b'));
    server.compact();
    const stream = watchWithClient(kc, '/api/v1/pods', { resourceVersion: old });
    assert.equal(await stream.ended, null);
    assert.deepEqual(
      stream.events.map((e) => [e.type, e.object.code]),
      [['ERROR', 410]],
    );
    assert.equal(server.requestsTo('/api/v1/pods', 'watch')[0]?.watchErrorCode, 410);

    const current = watchWithClient(kc, '/api/v1/pods', { resourceVersion: server.resourceVersion });
    await current.answered;
    server.upsert(pod('c'));
    await eventually(() => current.events.length >= 1, 'an event after compaction');
    assert.deepEqual(names(current.events), ['ADDED default/c']);
    (await current.answered).abort();
  });
});

test('timeoutSeconds ends the stream', async () => {
  await withServer(async (server, kc) => {
    const stream = watchWithClient(kc, '/api/v1/pods', { resourceVersion: server.resourceVersion, timeoutSeconds: 1 });
    await stream.answered;
    await delay(300);
    assert.equal(stream.hasEnded(), false);
    assert.equal(await stream.ended, null);
    assert.equal(server.openWatchCount, 0);
  });
});

test('namespaced watch paths see only their namespace', async () => {
  await withServer(async (server, kc) => {
    const stream = watchWithClient(kc, '/api/v1/namespaces/ns1/pods', { resourceVersion: server.resourceVersion });
    await stream.answered;
    server.upsert(pod('x', { namespace: 'ns2' }));
    server.upsert(pod('x', { namespace: 'ns1' }));
    await eventually(() => stream.events.length >= 1, 'an event');
    await delay(50);
    assert.deepEqual(names(stream.events), ['ADDED ns1/x']);
    (await stream.answered).abort();
  });
});

test('injected 500 and 403 answers reach the client as such, for as many requests as asked', async () => {
  await withServer(async (server, kc) => {
    const api = kc.makeApiClient(CoreV1Api);
    server.failRequests(403, { count: 1, requests: 'list' });
    await assert.rejects(api.listPodForAllNamespaces(), (err: { code?: number }) => err.code === 403);
    await api.listPodForAllNamespaces(); // the fault was used up

    server.failRequests(500, { requests: 'watch' });
    const failed = watchWithClient(kc, '/api/v1/pods', {});
    const err = (await failed.ended) as { statusCode?: number };
    assert.equal(err.statusCode, 500);
    await api.listPodForAllNamespaces(); // lists are unaffected by a watch fault
    server.clearFaults();
    const ok = watchWithClient(kc, '/api/v1/pods', {});
    await ok.answered;
    assert.equal(ok.hasEnded(), false);
    (await ok.answered).abort();
  });
});

test('dropStreams ends every open watch', async () => {
  await withServer(async (server, kc) => {
    const a = watchWithClient(kc, '/api/v1/pods', {});
    const b = watchWithClient(kc, '/api/v1/secrets', {});
    await Promise.all([a.answered, b.answered]);
    assert.equal(server.openWatchCount, 2);
    server.dropStreams();
    await Promise.all([a.ended, b.ended]);
    await eventually(() => server.openWatchCount === 0, 'no open watches');
  });
});

test('a stall after headers answers 200 and then sends nothing, while other watches get the change', async () => {
  await withServer(
    async (server, kc) => {
      const control = watchWithClient(kc, '/api/v1/pods', {
        resourceVersion: server.resourceVersion,
        allowWatchBookmarks: true,
      });
      await control.answered;
      server.stallWatches('after-headers');
      const stalled = watchWithClient(kc, '/api/v1/pods', {
        resourceVersion: server.resourceVersion,
        allowWatchBookmarks: true,
      });
      await stalled.answered; // headers arrived
      server.stallWatches(false);
      server.upsert(pod('p'));
      await eventually(
        () => control.events.some((e) => e.type === 'ADDED') && control.events.some((e) => e.type === 'BOOKMARK'),
        'the control watch events',
      );
      await delay(100);
      assert.deepEqual(stalled.events, []);
      assert.equal(stalled.hasEnded(), false);
      server.dropStreams();
      await stalled.ended;
    },
    { bookmarkIntervalMs: 30 },
  );
});

test('a stall before headers never answers until the stream is dropped', async () => {
  await withServer(async (server) => {
    server.stallWatches('before-headers');
    let answered = false;
    const failed = new Promise<Error>((resolve) => {
      const req = request(
        `${server.url}/api/v1/pods?watch=true`,
        { ca: testCertificates().caCert, headers: { authorization: `Bearer ${server.token}` } },
        (res) => {
          answered = true;
          res.resume();
        },
      );
      req.on('error', resolve);
      req.end();
    });
    await eventually(() => server.openWatchCount === 1, 'the stalled watch to arrive');
    await delay(200);
    assert.equal(answered, false);
    server.dropStreams();
    assert.match((await failed).message, /socket hang up|ECONNRESET/);
    assert.equal(answered, false);
  });
});

test('stop and restart on the same port keep the objects and their versions', async () => {
  await withServer(async (server, kc) => {
    server.upsert(pod('kept'));
    const api = kc.makeApiClient(CoreV1Api);
    const port = server.port;
    const version = server.resourceVersion;
    await server.stop();
    await assert.rejects(api.listPodForAllNamespaces(), /ECONNREFUSED/);
    await server.restart();
    assert.equal(server.port, port);
    const list = await api.listPodForAllNamespaces();
    assert.equal(list.metadata?.resourceVersion, version);
    assert.deepEqual(
      list.items.map((p) => p.metadata?.name),
      ['kept'],
    );
  });
});

// ---- lists in pages and at resource versions ---------------------------------------------

const podNames = (list: { items: Array<{ metadata?: { namespace?: string; name?: string } }> }): string[] =>
  list.items.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`);

test(
  'limit and continue page through one consistent state, in namespace/name order, whatever changes between ' + 'pages',
  async () => {
    await withServer(async (server, kc) => {
      for (const name of ['e', 'a', 'g', 'c', 'b', 'f', 'd']) server.upsert(pod(name));
      const api = kc.makeApiClient(CoreV1Api);
      const first = await api.listPodForAllNamespaces({ limit: 3 });
      assert.deepEqual(podNames(first), ['default/a', 'default/b', 'default/c']);
      const version = first.metadata?.resourceVersion;
      assert.equal(version, server.resourceVersion);
      assert.ok(first.metadata?._continue, 'a continue token while more items follow');

      // Changes after the first page do not show in the pages that follow.
      server.remove('Pod', 'default', 'e');
      server.upsert(pod('d', { ip: '10.9.9.9' }));
      server.upsert(pod('dd'));
      const second = await api.listPodForAllNamespaces({ limit: 3, _continue: first.metadata?._continue });
      assert.deepEqual(podNames(second), ['default/d', 'default/e', 'default/f']);
      assert.equal(second.items[0]?.status?.podIP, '10.0.0.1', 'd as it was at the first page');
      assert.equal(second.metadata?.resourceVersion, version);
      const last = await api.listPodForAllNamespaces({ limit: 3, _continue: second.metadata?._continue as string });
      assert.deepEqual(podNames(last), ['default/g']);
      assert.equal(last.metadata?._continue, undefined, 'no token on the last page');

      const fresh = await api.listPodForAllNamespaces({ limit: 100 });
      assert.deepEqual(podNames(fresh), [
        'default/a',
        'default/b',
        'default/c',
        'default/d',
        'default/dd',
        'default/f',
        'default/g',
      ]);
      assert.deepEqual(
        server.listRequests({ limited: true }).map((r) => r.items),
        [3, 3, 1, 7],
      );
    });
  },
);

test('pages are filled by the label selector, and the token ends where no selected object follows', async () => {
  await withServer(async (server, kc) => {
    for (let i = 0; i < 6; i++) server.upsert(pod(`p${i}`, { labels: { routable: i % 2 === 0 ? 'true' : 'false' } }));
    const api = kc.makeApiClient(CoreV1Api);
    const first = await api.listPodForAllNamespaces({ labelSelector: 'routable=true', limit: 2 });
    assert.deepEqual(podNames(first), ['default/p0', 'default/p2']);
    const second = await api.listPodForAllNamespaces({
      labelSelector: 'routable=true',
      limit: 2,
      _continue: first.metadata?._continue as string,
    });
    assert.deepEqual(podNames(second), ['default/p4']);
    assert.equal(second.metadata?._continue, undefined);
  });
});

test('a continue token expires with 410 on demand and once the history behind it is compacted', async () => {
  await withServer(async (server, kc) => {
    for (const name of ['a', 'b', 'c']) server.upsert(pod(name));
    const api = kc.makeApiClient(CoreV1Api);
    const first = await api.listPodForAllNamespaces({ limit: 1 });
    const token = first.metadata?._continue as string;
    server.expireContinueTokens();
    await assert.rejects(
      api.listPodForAllNamespaces({ limit: 1, _continue: token }),
      (err: { code?: number; body?: string }) =>
        err.code === 410 && /continue parameter is too old/.test(err.body ?? ''),
    );
    const again = await api.listPodForAllNamespaces({ limit: 1 });
    const next = await api.listPodForAllNamespaces({ limit: 1, _continue: again.metadata?._continue as string });
    assert.deepEqual(podNames(next), ['default/b'], 'a token handed out after the expiry works');

    server.upsert(pod('d'));
    server.compact();
    await assert.rejects(
      api.listPodForAllNamespaces({ limit: 1, _continue: next.metadata?._continue as string }),
      (err: { code?: number }) => err.code === 410,
    );
  });
});

test(
  'resourceVersion on a list: unset and "0" give the latest state, an exact version that state until ' +
    'compacted, bad combinations 400',
  async () => {
    await withServer(async (server, kc) => {
      server.upsert(pod('a'));
      const then = server.resourceVersion;
      server.upsert(pod('a', { ip: '10.0.0.2' }));
      server.upsert(pod('b'));
      const api = kc.makeApiClient(CoreV1Api);
      const ipsOf = (list: { items: Array<{ status?: { podIP?: string } }> }) => list.items.map((p) => p.status?.podIP);

      for (const resourceVersion of [undefined, '0']) {
        const list = await api.listPodForAllNamespaces(resourceVersion === undefined ? {} : { resourceVersion });
        assert.deepEqual(ipsOf(list), ['10.0.0.2', '10.0.0.1'], `resourceVersion ${String(resourceVersion)}`);
        assert.equal(list.metadata?.resourceVersion, server.resourceVersion);
      }
      // Not older than: without a limit, or asked for, the latest state will do.
      for (const request of [
        { resourceVersion: then },
        { resourceVersion: then, resourceVersionMatch: 'NotOlderThan' },
      ]) {
        assert.deepEqual(
          ipsOf(await api.listPodForAllNamespaces(request)),
          ['10.0.0.2', '10.0.0.1'],
          JSON.stringify(request),
        );
      }
      // Exact: with a limit, or asked for.
      for (const request of [
        { resourceVersion: then, limit: 10 },
        { resourceVersion: then, resourceVersionMatch: 'Exact' },
      ]) {
        const list = await api.listPodForAllNamespaces(request);
        assert.deepEqual(podNames(list), ['default/a'], JSON.stringify(request));
        assert.deepEqual(ipsOf(list), ['10.0.0.1']);
        assert.equal(list.metadata?.resourceVersion, then);
      }
      const rejectsWith = (code: number, request: Parameters<CoreV1Api['listPodForAllNamespaces']>[0]) =>
        assert.rejects(
          api.listPodForAllNamespaces(request),
          (err: { code?: number }) => err.code === code,
          JSON.stringify(request),
        );
      await rejectsWith(504, { resourceVersion: String(Number(server.resourceVersion) + 10) });
      await rejectsWith(400, { resourceVersionMatch: 'Exact' });
      await rejectsWith(400, { resourceVersion: '0', resourceVersionMatch: 'Exact' });
      await rejectsWith(400, { resourceVersion: then, resourceVersionMatch: 'Newest' });
      const paged = await api.listPodForAllNamespaces({ limit: 1 });
      await rejectsWith(400, { limit: 1, _continue: paged.metadata?._continue as string, resourceVersion: then });
      server.compact();
      await rejectsWith(410, { resourceVersion: then, resourceVersionMatch: 'Exact' });
    });
  },
);

test('goneWatches answers watches with ERROR 410 at once, the list still answers', async () => {
  await withServer(async (server, kc) => {
    server.upsert(pod('a'));
    server.goneWatches(1);
    const gone = watchWithClient(kc, '/api/v1/pods', { resourceVersion: server.resourceVersion });
    assert.equal(await gone.ended, null);
    assert.deepEqual(
      gone.events.map((e) => [e.type, e.object.code]),
      [['ERROR', 410]],
    );
    const ok = watchWithClient(kc, '/api/v1/pods', { resourceVersion: server.resourceVersion });
    await ok.answered;
    server.upsert(pod('b'));
    await eventually(() => ok.events.length >= 1, 'an event on the next watch');
    (await ok.answered).abort();
    assert.equal((await kc.makeApiClient(CoreV1Api).listPodForAllNamespaces()).items.length, 2);
  });
});
