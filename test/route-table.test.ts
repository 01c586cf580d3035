import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { defaultConfig } from '../src/core/config.js';
import type { Pod, Secret } from '../src/core/kube-objects.js';
import {
  buildRouteTable,
  podCandidates,
  routingFacts,
  sameRoutingFacts,
  type Rejection,
  type RouteTable,
} from '../src/core/route-table.js';
import { apiKeySecret, pod } from './support/objects.js';

const config = defaultConfig();
const routesOf = (pods: Pod[], secrets: Secret[] = []) =>
  buildRouteTable(config, pods, secrets).routes.map(
    (r) => `${r.host}${r.path} -> ${r.backends.map((b) => `${b.pod}@${b.ip}:${b.port}`).join(',')}`,
  );
const codesOf = (rejections: Rejection[]) => rejections.map((r) => `${r.namespace}/${r.pod} ${r.code}`);

// Arbitraries for the properties below.
const hostArb = fc.constantFrom('a.example.com', 'B.example.com', 'c.test', '10.1.2.3', 'bad_host', 'x..y');
const pathArb = fc.constantFrom('80:/', '80:/api', '3000:/api', '3000:/nodejs', '8080:/x', '80:/a;b', '80://', 'junk');
const podArb = fc.record({
  name: fc.constantFrom('p1', 'p2', 'p3', 'p4'),
  namespace: fc.constantFrom('ns-a', 'ns-b', 'ns-c'),
  hosts: fc.array(hostArb, { maxLength: 4 }).map((h) => h.join(' ')),
  paths: fc.array(pathArb, { maxLength: 4 }).map((p) => p.join(' ')),
  ip: fc.integer({ min: 1, max: 250 }).map((n) => `10.0.0.${n}`),
  created: fc.integer({ min: 0, max: 5 }).map((d) => `2024-01-0${d + 1}T00:00:00Z`),
  phase: fc.constantFrom('Running', 'Running', 'Running', 'Pending'),
  ready: fc.boolean(),
  // Most pods declare ports 80 and 3000; some declare none, as many real pods do.
  ports: fc.constantFrom<number[]>([80, 3000], [80, 3000], []),
});
const objectsArb = fc
  .tuple(
    fc.uniqueArray(podArb, { selector: (p) => `${p.namespace}/${p.name}`, maxLength: 8 }),
    fc.subarray(['ns-a', 'ns-b', 'ns-c']),
  )
  .map(([specs, keyed]) => ({
    pods: specs.map((s) => pod(s.name, s)),
    secrets: keyed.map((ns) => apiKeySecret(ns, `key-of-${ns}`)),
  }));

/** Each pod with its namespace, its name and the rejections about it. */
const eachPod = (table: RouteTable, pods: Pod[]) =>
  pods.map((p) => {
    const ns = p.metadata?.namespace ?? '';
    const name = p.metadata?.name ?? '';
    return { p, ns, name, own: table.rejections.filter((r) => r.namespace === ns && r.pod === name) };
  });

describe('route table', () => {
  it('routes the cross product of hosts and paths', () => {
    assert.deepEqual(routesOf([pod('web', { ip: '10.0.0.5', hosts: 'host1 host2', paths: '80:/ 3000:/nodejs' })]), [
      'host1/ -> web@10.0.0.5:80',
      'host1/nodejs -> web@10.0.0.5:3000',
      'host2/ -> web@10.0.0.5:80',
      'host2/nodejs -> web@10.0.0.5:3000',
    ]);
  });

  it('orders the pods of a route by name, whatever their creation order', () => {
    const pods = ['c', 'a', 'b'].map((name, i) =>
      pod(`web-${name}`, { ip: `10.0.0.${i + 1}`, hosts: 'h', paths: '80:/' }),
    );
    assert.deepEqual(routesOf(pods), ['h/ -> web-a@10.0.0.2:80,web-b@10.0.0.3:80,web-c@10.0.0.1:80']);
  });

  it('keys pods by namespace and name, so same-named pods in two namespaces both count', () => {
    const table = buildRouteTable(
      config,
      [
        pod('web', { namespace: 'a', ip: '10.0.0.1', hosts: 'a.example.com', paths: '80:/' }),
        pod('web', { namespace: 'b', ip: '10.0.0.2', hosts: 'b.example.com', paths: '80:/' }),
      ],
      [],
    );
    assert.deepEqual(
      table.routes.map((r) => [r.host, r.namespace, r.backends[0]?.ip]),
      [
        ['a.example.com', 'a', '10.0.0.1'],
        ['b.example.com', 'b', '10.0.0.2'],
      ],
    );
  });

  it('picks the same one of two objects with one namespace/name, whatever their order', () => {
    const first = pod('web', { ip: '10.0.0.1', hosts: 'h', paths: '80:/' });
    const second = pod('web', { ip: '10.0.0.2', hosts: 'h', paths: '80:/' });
    assert.deepEqual(buildRouteTable(config, [first, second], []), buildRouteTable(config, [second, first], []));
    assert.equal(buildRouteTable(config, [first, second], []).routes[0]?.backends.length, 1);
  });

  it('routes IPv6 pods', () => {
    assert.deepEqual(routesOf([pod('v6', { ip: 'fd00::7', hosts: 'h', paths: '3000:/' })]), ['h/ -> v6@fd00::7:3000']);
  });
});

describe('route table: which pods count', () => {
  it('routes only running, ready, addressed pods that are not terminating, saying why for the others', () => {
    const table = buildRouteTable(
      config,
      [
        pod('pending', { hosts: 'h', paths: '80:/', phase: 'Pending' }),
        pod('no-ip', { hosts: 'h', paths: '80:/', ip: '' }),
        pod('bad-ip', { hosts: 'h', paths: '80:/', ip: '10.0.0.300' }),
        pod('unready', { hosts: 'h', paths: '80:/', ready: false }),
        pod('leaving', { hosts: 'h', paths: '80:/', deleting: true }),
        pod('unlabelled', { hosts: 'h', paths: '80:/', labels: { app: 'x' } }),
        pod('no-annotations'),
      ],
      [],
    );
    assert.deepEqual(table.routes, []);
    assert.deepEqual(codesOf(table.rejections), [
      'default/bad-ip BAD_IP',
      'default/leaving TERMINATING',
      'default/no-annotations MISSING_ANNOTATION',
      'default/no-annotations MISSING_ANNOTATION',
      'default/no-ip NO_IP',
      'default/pending NOT_RUNNING',
      'default/unlabelled NOT_SELECTED',
      'default/unready NOT_READY',
    ]);
    const pending = table.rejections.find((r) => r.pod === 'pending');
    assert.deepEqual(pending, {
      namespace: 'default',
      pod: 'pending',
      field: 'status.phase',
      value: 'Pending',
      code: 'NOT_RUNNING',
      reason: 'pod is not running (phase "Pending")',
    });
  });

  it('routes pods that are not ready when the setting turns the check off', () => {
    const lenient = defaultConfig({ requireReady: 'false' });
    assert.equal(
      buildRouteTable(lenient, [pod('unready', { hosts: 'h', paths: '80:/', ready: false })], []).routes.length,
      1,
    );
  });
});

describe('route table: which hosts and paths count', () => {
  it('keeps the valid hosts and paths of a pod and records each dropped one', () => {
    const web = pod('web', { hosts: 'good.example.com bad_host', paths: '80:/ok 8080:/nope 80:/a;b' });
    const table = buildRouteTable(config, [web], []);
    assert.deepEqual(routesOf([web]), ['good.example.com/ok -> web@10.0.0.1:80']);
    assert.deepEqual(
      table.rejections.map((r) => [r.field, r.value, r.code]),
      [
        ['metadata.annotations.routingHosts', 'bad_host', 'BAD_HOST'],
        ['metadata.annotations.routingPaths', '8080:/nope', 'PORT_NOT_DECLARED'],
        ['metadata.annotations.routingPaths', '80:/a;b', 'BAD_PATH'],
      ],
    );
  });

  it('routes a real `kubectl get pods -o json` pod that declares no container ports', () => {
    // A minikube pod as kubectl prints it: agnhost listening on 8080 without a ports list.
    const fromKubectl = JSON.parse(
      readFileSync(new URL('./fixtures/minikube-pod-no-ports.json', import.meta.url), 'utf8'),
    ) as Pod;
    assert.equal(fromKubectl.spec?.containers?.[0]?.ports, undefined, 'the fixture declares no ports');
    const table = buildRouteTable(config, [fromKubectl], []);
    assert.deepEqual(table.rejections, []);
    assert.deepEqual(routesOf([fromKubectl]), [
      'queue.k8s.local/queue -> queue-worker-6d5f9c7b8d-x7k2p@10.244.0.12:8080',
    ]);
  });

  it('routes nothing for a pod without a valid host or path, and says so', () => {
    const table = buildRouteTable(
      config,
      [pod('web', { hosts: 'bad_host', paths: '80:/' }), pod('api', { hosts: 'h', paths: '  ' })],
      [],
    );
    assert.deepEqual(table.routes, []);
    assert.deepEqual(codesOf(table.rejections), [
      'default/api NO_PATHS',
      'default/web BAD_HOST',
      'default/web NO_HOSTS',
    ]);
  });

  it('reads the annotations the configuration names', () => {
    const publicRouter = defaultConfig({ hostsAnnotation: 'publicHosts', pathsAnnotation: 'publicPaths' });
    const both = pod('web', {
      annotations: {
        publicHosts: 'test.k8s.com',
        publicPaths: '3000:/public',
        privateHosts: 'test.k8s.local',
        privatePaths: '3000:/internal',
      },
    });
    assert.deepEqual(
      buildRouteTable(publicRouter, [both], []).routes.map((r) => r.host + r.path),
      ['test.k8s.com/public'],
    );
  });
});

describe('API keys', () => {
  it('locks every route of a namespace with the base64 text of its Secret', () => {
    const table = buildRouteTable(
      config,
      [pod('web', { namespace: 'my-namespace', hosts: 'h', paths: '80:/' })],
      [apiKeySecret('my-namespace', 'supersecret'), apiKeySecret('other', 'unrelated')],
    );
    assert.equal(table.routes[0]?.apiKey, 'c3VwZXJzZWNyZXQ=');
  });

  it('leaves routes open without the Secret, with a Secret of another name, or without the data field', () => {
    const pods = [pod('web', { namespace: 'ns', hosts: 'h', paths: '80:/' })];
    for (const secrets of [
      [],
      [apiKeySecret('ns', 'k', 'other-name')],
      [apiKeySecret('ns', 'k', 'routing', 'other-field')],
    ]) {
      assert.equal(buildRouteTable(config, pods, secrets).routes[0]?.apiKey, null);
    }
  });

  it('uses the secret location the configuration names', () => {
    const custom = defaultConfig({ apiKeySecret: 'routing:public-api-key' });
    const table = buildRouteTable(
      custom,
      [pod('web', { namespace: 'ns', hosts: 'h', paths: '80:/' })],
      [apiKeySecret('ns', 'public', 'routing', 'public-api-key')],
    );
    assert.equal(table.routes[0]?.apiKey, Buffer.from('public').toString('base64'));
  });

  it('withholds the routes of a namespace whose key is not base64 or empty, rather than leaving them open', () => {
    for (const value of ['not base64!', '']) {
      const secret: Secret = {
        kind: 'Secret',
        metadata: { name: 'routing', namespace: 'ns' },
        data: { 'api-key': value },
      };
      const table = buildRouteTable(config, [pod('web', { namespace: 'ns', hosts: 'h', paths: '80:/' })], [secret]);
      assert.deepEqual(table.routes, []);
      assert.deepEqual(codesOf(table.rejections), ['ns/web BAD_API_KEY']);
      if (value !== '') assert.ok(!JSON.stringify(table).includes(value), 'the bad key is not echoed');
    }
  });
});

describe('two namespaces claiming one host and path', () => {
  const older = pod('owner-pod', {
    namespace: 'tenant-a',
    ip: '10.0.0.1',
    hosts: 'shared.example.com',
    paths: '80:/api 80:/a-only',
    created: '2024-01-01T00:00:00Z',
  });
  const younger = pod('intruder', {
    namespace: 'tenant-b',
    ip: '10.0.0.2',
    hosts: 'shared.example.com',
    paths: '80:/api 80:/b-only',
    created: '2024-06-01T00:00:00Z',
  });

  it('gives the route to the namespace whose oldest pod there was created first, with its own key', () => {
    const table = buildRouteTable(
      config,
      [younger, older],
      [apiKeySecret('tenant-a', 'a-key'), apiKeySecret('tenant-b', 'b-key')],
    );
    const api = table.routes.find((r) => r.path === '/api');
    assert.equal(api?.namespace, 'tenant-a');
    assert.deepEqual(
      api?.backends.map((b) => b.pod),
      ['owner-pod'],
    );
    assert.equal(api?.apiKey, Buffer.from('a-key').toString('base64'));
    assert.deepEqual(
      table.routes.map((r) => r.path),
      ['/a-only', '/api', '/b-only'],
      'unclaimed paths stay with each tenant',
    );
  });

  it('rejects the other namespace for that route, naming the owner', () => {
    const table = buildRouteTable(config, [younger, older], []);
    assert.deepEqual(table.rejections, [
      {
        namespace: 'tenant-b',
        pod: 'intruder',
        field: 'route',
        value: 'shared.example.com/api',
        code: 'ROUTE_CLAIMED',
        reason: 'host shared.example.com path /api is owned by namespace tenant-a, whose pods there are older',
      },
    ]);
  });

  it('keeps the route withheld, not handed over, when the owner has a broken key', () => {
    const broken: Secret = {
      kind: 'Secret',
      metadata: { name: 'routing', namespace: 'tenant-a' },
      data: { 'api-key': '!!' },
    };
    const table = buildRouteTable(config, [younger, older], [broken]);
    assert.equal(
      table.routes.find((r) => r.path === '/api'),
      undefined,
    );
  });
});

describe('properties: order and rejections', () => {
  it('does not depend on the order of the input objects', () => {
    fc.assert(
      fc.property(objectsArb, fc.infiniteStream(fc.nat()), ({ pods, secrets }, randoms) => {
        const shuffled = <T>(items: T[]): T[] => {
          const copy = [...items];
          for (let i = copy.length - 1; i > 0; i--) {
            const j = (randoms.next().value as number) % (i + 1);
            [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
          }
          return copy;
        };
        const expected = JSON.stringify(buildRouteTable(config, pods, secrets));
        assert.equal(JSON.stringify(buildRouteTable(config, shuffled(pods), shuffled(secrets))), expected);
      }),
      { numRuns: 300 },
    );
  });

  it('records every host and path entry it drops, and routes every one it keeps', () => {
    fc.assert(
      fc.property(objectsArb, ({ pods, secrets }) => {
        const table = buildRouteTable(config, pods, secrets);
        for (const { p, ns, name, own } of eachPod(table, pods)) {
          const routed = table.routes.filter((r) => r.backends.some((b) => b.pod === name && b.namespace === ns));
          if (routed.length === 0) {
            assert.ok(own.length > 0, `${ns}/${name} is not routed and has no rejection`);
            continue;
          }
          const hostEntries = (p.metadata?.annotations?.routingHosts ?? '').split(/\s+/).filter(Boolean);
          const pathEntries = (p.metadata?.annotations?.routingPaths ?? '').split(/\s+/).filter(Boolean);
          const claimed = (route: string): boolean => own.some((r) => r.code === 'ROUTE_CLAIMED' && r.value === route);
          for (const entry of hostEntries) {
            const host = entry.toLowerCase();
            const kept = routed.some((r) => r.host === host);
            const dropped = own.some((r) => r.field.endsWith('routingHosts') && r.value === entry);
            const lost = own.some((r) => r.code === 'ROUTE_CLAIMED' && r.value.startsWith(`${host}/`));
            assert.ok(!(kept && dropped), `host entry ${entry} of ${ns}/${name} is both routed and rejected`);
            assert.ok(kept || dropped || lost, `host entry ${entry} of ${ns}/${name} is neither routed nor rejected`);
          }
          for (const entry of pathEntries) {
            const port = Number(entry.slice(0, entry.indexOf(':')));
            const path = entry.slice(entry.indexOf(':') + 1);
            const kept = routed.some(
              (r) => r.path === path && r.backends.some((b) => b.pod === name && b.port === port),
            );
            const dropped = own.some((r) => r.field.endsWith('routingPaths') && r.value === entry);
            // Lost to another namespace on every host it was asked for (or some of them, when kept on others).
            const lost = hostEntries.some((h) => claimed(`${h.toLowerCase()}${path}`));
            assert.ok(!(kept && dropped), `path entry ${entry} of ${ns}/${name} is both routed and rejected`);
            assert.ok(kept || dropped || lost, `path entry ${entry} of ${ns}/${name} is neither routed nor rejected`);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('properties: ports and owners', () => {
  it('refuses a port as PORT_NOT_DECLARED exactly when the pod declares ports and not that one', () => {
    fc.assert(
      fc.property(objectsArb, ({ pods, secrets }) => {
        const table = buildRouteTable(config, pods, secrets);
        for (const { p, ns, name, own } of eachPod(table, pods)) {
          const declared = (p.spec?.containers ?? []).flatMap((c) => (c.ports ?? []).map((port) => port.containerPort));
          // Annotations are read only for running, ready pods.
          if (own.some((r) => r.field.startsWith('status.'))) continue;
          for (const entry of (p.metadata?.annotations?.routingPaths ?? '').split(/\s+/).filter(Boolean)) {
            const port = Number(entry.slice(0, entry.indexOf(':')));
            const undeclared = own.some((r) => r.code === 'PORT_NOT_DECLARED' && r.value === entry);
            const expected = /^[1-9][0-9]*:/.test(entry) && declared.length > 0 && !declared.includes(port);
            assert.equal(undeclared, expected, `${entry} of ${ns}/${name} (declared: ${declared.join(',') || 'none'})`);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('gives each host+path to exactly one namespace', () => {
    fc.assert(
      fc.property(objectsArb, ({ pods, secrets }) => {
        const table = buildRouteTable(config, pods, secrets);
        const keys = table.routes.map((r) => `${r.host}${r.path}`);
        assert.equal(new Set(keys).size, keys.length);
        for (const r of table.routes) assert.ok(r.backends.every((b) => b.namespace === r.namespace));
      }),
      { numRuns: 200 },
    );
  });
});

describe('route table limits', () => {
  it('routes at most MAX_HOSTS_PER_POD hosts and MAX_PATHS_PER_POD paths of a pod, and says what it dropped', () => {
    const limited = defaultConfig({ maxHostsPerPod: '2', maxPathsPerPod: '3' });
    const greedy = pod('greedy', { hosts: 'a.test b.test c.test d.test', paths: '80:/1 80:/2 80:/3 80:/4 80:/5' });
    const table = buildRouteTable(limited, [greedy], []);
    assert.equal(table.routes.length, 2 * 3);
    assert.deepEqual([...new Set(table.routes.map((r) => r.host))], ['a.test', 'b.test']);
    assert.deepEqual([...new Set(table.routes.map((r) => r.path))], ['/1', '/2', '/3']);
    assert.deepEqual(
      table.rejections.map((r) => [r.code, r.value, r.reason]),
      [
        [
          'TOO_MANY_HOSTS',
          '4 hosts',
          'only the first 2 valid hosts are routed (MAX_HOSTS_PER_POD); 2 dropped, the first being c.test',
        ],
        [
          'TOO_MANY_PATHS',
          '5 paths',
          'only the first 3 valid paths are routed (MAX_PATHS_PER_POD); 2 dropped, the first being 80:/4',
        ],
      ],
    );
  });

  it('keeps a pod that asks for a billion routes to the default 100 x 100', () => {
    const hosts = Array.from({ length: 30_000 }, (_, i) => `h${i}`).join(' ');
    const paths = Array.from({ length: 30_000 }, (_, i) => `80:/p${i}`).join(' ');
    const table = buildRouteTable(config, [pod('greedy', { hosts, paths })], []);
    assert.equal(table.routes.length, 100 * 100);
    assert.deepEqual(
      table.rejections.map((r) => r.code),
      ['TOO_MANY_HOSTS', 'TOO_MANY_PATHS'],
    );
  });
});

// The incremental builder skips a changed pod whose facts sameRoutingFacts finds equal:
// it must never find two pods equal that routingFacts tells apart, nor miss the pods it
// keeps equal (what a relist of unchanged pods hands over).
const variant = fc.record({
  name: fc.constantFrom('p', 'q'),
  namespace: fc.constantFrom('a', 'b'),
  hosts: fc.constantFrom('h.test', 'H.test other.test'),
  paths: fc.constantFrom('80:/', '80:/ 3000:/x'),
  ports: fc.constantFrom<number[]>([80, 3000], [3000, 80], []),
  phase: fc.constantFrom('Running', 'Pending'),
  ready: fc.boolean(),
  ip: fc.constantFrom('10.0.0.1', '10.0.0.2', ''),
  created: fc.constantFrom('2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z'),
  deleting: fc.boolean(),
  labels: fc.constantFrom<Record<string, string>>(
    { routable: 'true' },
    { routable: 'true', x: '1' },
    { x: '1', routable: 'true' },
    { routable: 'no' },
  ),
  unrelated: fc.constantFrom('1', '2'),
  uid: fc.constantFrom('u1', 'u2'),
});
type Variant = typeof variant extends fc.Arbitrary<infer T> ? T : never;
const build = (v: Variant): Pod => pod(v.name, { ...v, annotations: { unrelated: v.unrelated } });
const normalized = (p: Pod): string => {
  const facts = routingFacts(config, p);
  const labels = Object.fromEntries(Object.entries(facts.metadata?.labels ?? {}).sort(([x], [y]) => (x < y ? -1 : 1)));
  return JSON.stringify({ ...facts, metadata: { ...facts.metadata, labels } });
};

/** Two pods: the second differs from the first in a few fields (often only in ones routing ignores). */
const pair = fc
  .tuple(
    variant,
    variant,
    fc.subarray(
      [
        'name',
        'namespace',
        'hosts',
        'paths',
        'ports',
        'phase',
        'ready',
        'ip',
        'created',
        'deleting',
        'labels',
        'unrelated',
        'uid',
      ] as const,
      { maxLength: 3 },
    ),
  )
  .map(([x, y, taken]) => [x, { ...x, ...Object.fromEntries(taken.map((k) => [k, y[k]])) }] as const);

describe('routing facts', () => {
  it('finds two pods the same exactly when their facts are equal (labels in any order)', () => {
    fc.assert(
      fc.property(pair, ([x, y]) => {
        const [a, b] = [build(x), build(y)];
        assert.equal(sameRoutingFacts(config, a, b), normalized(a) === normalized(b));
      }),
      { numRuns: 3000 },
    );
  });

  it('routes pods with the same facts alike', () => {
    fc.assert(
      fc.property(pair, ([x, y]) => {
        const [a, b] = [build(x), build(y)];
        fc.pre(sameRoutingFacts(config, a, b));
        assert.equal(JSON.stringify(podCandidates(config, a)), JSON.stringify(podCandidates(config, b)));
      }),
      { numRuns: 300 },
    );
  });
});
