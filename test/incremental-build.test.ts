import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { defaultConfig, type RouterConfig } from '../src/core/config.js';
import { IncrementalRouteTable } from '../src/core/incremental-table.js';
import type { Pod, Secret } from '../src/core/kube-objects.js';
import { objectKey } from '../src/core/kube-objects.js';
import { buildRouteTable, type RouteTable } from '../src/core/route-table.js';
import { runInSlices } from '../src/core/time-slices.js';
import { fnv1a32 } from '../nginx/hash.js';
import { IncrementalNginxRenderer } from '../nginx/incremental-render.js';
import { renderNginxConf, type RenderOptions } from '../nginx/render.js';
import { apiKeySecret, pod } from './support/objects.js';

// The incremental route table and renderer against the reference functions: a random
// sequence of changes to Pods and Secrets, and after each one the incremental results
// must be byte for byte what buildRouteTable and renderNginxConf give from scratch.
// Small pools of names, hosts and paths make pods collide on routes, namespaces fight
// over them, upstream names collide (two hosts with one FNV-1a hash) and pods flip
// between routed and rejected, and pods of one route ask for affinity or not.

const NAMESPACES = ['a', 'b', 'c', 'Bad_NS'];
const POD_NAMES = ['p1', 'p2', 'p3', 'p4', 'p5', '-bad'];
// h84337.example.com/ and h1340180.example.com/ share an FNV-1a hash (checked below).
const HOSTS = [
  'h1.test',
  'h2.test',
  'H1.test',
  'h84337.example.com',
  'h1340180.example.com',
  '10.0.0.9',
  'bad_host',
  'h3.test',
];
const PATHS = ['/', '/a', '/a/', '/b', '/bad;x', '/api/v1'];
const PORTS = [80, 3000, 8080, 70000];

const podArbitrary: fc.Arbitrary<Pod> = fc
  .record({
    namespace: fc.constantFrom(...NAMESPACES),
    name: fc.constantFrom(...POD_NAMES),
    hosts: fc.option(fc.subarray(HOSTS, { minLength: 0, maxLength: 3 }), { freq: 8 }),
    paths: fc.option(fc.array(fc.tuple(fc.constantFrom(...PORTS), fc.constantFrom(...PATHS)), { maxLength: 3 }), {
      freq: 8,
    }),
    separator: fc.constantFrom(' ', '\n', ' \t '),
    ports: fc.subarray([80, 3000, 8080]),
    phase: fc.constantFrom('Running', 'Running', 'Running', 'Pending'),
    ready: fc.constantFrom(true, true, true, false),
    ip: fc.constantFrom('10.0.0.1', '10.0.0.2', '10.0.0.3', 'fd00::1', '', 'nope'),
    created: fc.constantFrom('2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z', 'not a date'),
    deleting: fc.boolean().map((b) => b && Math.random() < 0.2),
    selected: fc.constantFrom(true, true, true, false),
    affinity: fc.constantFrom<string | null>(null, null, 'ip', 'ip', '', 'sticky'),
    resourceVersion: fc.nat(),
  })
  .map((r) => {
    const annotations: Record<string, string> = { unrelated: String(r.resourceVersion) };
    if (r.hosts !== null) annotations.routingHosts = r.hosts.join(r.separator);
    if (r.paths !== null) annotations.routingPaths = r.paths.map(([port, path]) => `${port}:${path}`).join(r.separator);
    if (r.affinity !== null) annotations.routingAffinity = r.affinity;
    const p = pod(r.name, {
      namespace: r.namespace,
      ip: r.ip,
      ports: r.ports,
      phase: r.phase,
      ready: r.ready,
      created: r.created,
      deleting: r.deleting,
      labels: r.selected ? { routable: 'true' } : { routable: 'false' },
      annotations,
    });
    if (p.metadata !== undefined) p.metadata.resourceVersion = String(r.resourceVersion);
    return p;
  });

const secretArbitrary: fc.Arbitrary<Secret> = fc
  .record({
    namespace: fc.constantFrom(...NAMESPACES),
    value: fc.constantFrom('c3VwZXJzZWNyZXQ=', 'b3RoZXI=', '', 'not base64!'),
    name: fc.constantFrom('routing', 'routing', 'other'),
    field: fc.constantFrom('api-key', 'api-key', 'nope'),
  })
  .map((r) => {
    const s = apiKeySecret(r.namespace, 'x', r.name, r.field);
    s.data = { [r.field]: r.value };
    return s;
  });

type Step =
  | { kind: 'putPod'; pod: Pod }
  | { kind: 'removePod'; index: number }
  | { kind: 'retouchPod'; index: number }
  | { kind: 'putSecret'; secret: Secret }
  | { kind: 'removeSecret'; index: number }
  | { kind: 'nothing' }
  | { kind: 'duplicate'; index: number; pod: Pod };

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: podArbitrary.map((p) => ({ kind: 'putPod' as const, pod: p })) },
  { weight: 2, arbitrary: fc.nat().map((index) => ({ kind: 'removePod' as const, index })) },
  { weight: 1, arbitrary: fc.nat().map((index) => ({ kind: 'retouchPod' as const, index })) },
  { weight: 2, arbitrary: secretArbitrary.map((s) => ({ kind: 'putSecret' as const, secret: s })) },
  { weight: 1, arbitrary: fc.nat().map((index) => ({ kind: 'removeSecret' as const, index })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'nothing' as const }) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.nat(), podArbitrary).map(([index, p]) => ({ kind: 'duplicate' as const, index, pod: p })),
  },
);

const configArbitrary = fc
  .record({
    maxHostsPerPod: fc.constantFrom('1', '2', '100'),
    maxPathsPerPod: fc.constantFrom('1', '2', '100'),
    requireReady: fc.constantFrom('true', 'false'),
    port: fc.constantFrom('80', '8080'),
    listenAddress: fc.constantFrom('*', '127.0.0.1', '::1'),
    apiKeyHeader: fc.constantFrom('X-ROUTING-API-KEY', 'X-Key'),
    upstreamKeepalive: fc.constantFrom('0', '16'),
    workerProcesses: fc.constantFrom('1', 'auto'),
  })
  .map((overrides) => defaultConfig(overrides));

/** A source's snapshot: the objects in any order. */
function shuffled<T>(items: Iterable<T>, seed: number): T[] {
  const out = [...items];
  let s = seed || 1;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

function runtimeOptions(config: RouterConfig, version: string): RenderOptions {
  return {
    ...config,
    runtime: {
      pidFile: '/tmp/p',
      errorLog: '/tmp/e',
      accessLog: '/tmp/a',
      tempDir: '/tmp/t',
      status: { port: 1, configVersion: version },
    },
  };
}

/** The key of some existing object, or '' when there is none. */
function some(keys: Iterable<string>, index: number): string {
  const list = [...keys];
  return list[index % Math.max(1, list.length)] ?? '';
}

/** Changes the objects a step changes; a duplicate goes into `extra`, beside the maps. */
function applyStep(step: Step, pods: Map<string, Pod>, secrets: Map<string, Secret>, extra: Pod[]): void {
  switch (step.kind) {
    case 'putPod':
      pods.set(objectKey(step.pod), step.pod);
      break;
    case 'removePod':
      pods.delete(some(pods.keys(), step.index));
      break;
    case 'retouchPod': {
      // A new object with the same content, as a relist hands out.
      const twin = pods.get(some(pods.keys(), step.index));
      if (twin !== undefined) pods.set(objectKey(twin), structuredClone(twin));
      break;
    }
    case 'putSecret':
      secrets.set(objectKey(step.secret), step.secret);
      break;
    case 'removeSecret':
      secrets.delete(some(secrets.keys(), step.index));
      break;
    case 'duplicate': {
      // The same namespace/name twice in one snapshot (sources never do it; the reference copes).
      const twin = pods.get(some(pods.keys(), step.index));
      if (twin?.metadata !== undefined)
        extra.push({
          ...step.pod,
          metadata: { ...step.pod.metadata, name: twin.metadata.name, namespace: twin.metadata.namespace },
        });
      break;
    }
    case 'nothing':
      break;
  }
}

describe('incremental route table and renderer', () => {
  it('upstream names in the pools collide, so suffixes are exercised', () => {
    assert.equal(fnv1a32('h84337.example.com/'), fnv1a32('h1340180.example.com/'));
  });

  it('give what buildRouteTable and renderNginxConf give, after every change of a random sequence', () => {
    fc.assert(
      // Snapshots in any order, or in a stable one (the sources keep theirs: a changed object
      // where the old one was, a new one at the end), where the builder finds pods by place.
      fc.property(
        configArbitrary,
        fc.array(stepArbitrary, { minLength: 1, maxLength: 40 }),
        fc.nat(),
        fc.boolean(),
        (config, steps, seed, stable) => {
          const pods = new Map<string, Pod>();
          const secrets = new Map<string, Secret>();
          const table = new IncrementalRouteTable(config);
          const renderer = new IncrementalNginxRenderer();
          // Fed buildRouteTable's tables, all new objects: nothing is recognised by identity.
          const freshRenderer = new IncrementalNginxRenderer();
          let before: { json: string; table: RouteTable } | null = null;
          steps.forEach((step, n) => {
            const extra: Pod[] = [];
            applyStep(step, pods, secrets, extra);
            const podSnapshot = stable
              ? [...pods.values(), ...extra]
              : shuffled([...pods.values(), ...extra], seed + n);
            const secretSnapshot = stable ? [...secrets.values()] : shuffled(secrets.values(), seed + n + 1);
            const expected = buildRouteTable(config, podSnapshot, secretSnapshot);
            const actual = table.update(podSnapshot, secretSnapshot);
            const json = JSON.stringify(expected);
            assert.equal(JSON.stringify(actual), json, `table after step ${n + 1} (${step.kind})`);
            if (before !== null && before.json === json && extra.length === 0) {
              assert.equal(actual, before.table, `an unchanged table is the same object (step ${n + 1}, ${step.kind})`);
            }
            before = { json, table: actual };
            const conf = renderNginxConf(expected, config);
            assert.equal(renderer.render(actual, config), conf, `nginx.conf after step ${n + 1} (${step.kind})`);
            assert.equal(
              freshRenderer.render(expected, config),
              conf,
              `nginx.conf of a new table after step ${n + 1} (${step.kind})`,
            );
            const withRuntime = runtimeOptions(config, `v${n}`);
            assert.equal(
              renderer.render(actual, withRuntime),
              renderNginxConf(expected, withRuntime),
              `managed nginx.conf after step ${n + 1}`,
            );
          });
        },
      ),
      {
        numRuns: 300,
        includeErrorInReport: true,
        ...(process.env.FC_SEED
          ? { seed: Number(process.env.FC_SEED), path: process.env.FC_PATH, endOnFailure: true }
          : {}),
      },
    );
  });
});

describe('incremental route table and renderer: colliding names and many paths', () => {
  it('keep colliding upstream names as the reference gives them while the routes sharing a hash come and go', () => {
    // Upstreams need two pods on a route: pods on the two colliding hosts, with path /.
    const collidingPod = fc
      .record({
        name: fc.constantFrom('p1', 'p2', 'p3', 'p4', 'p5', 'p6'),
        host: fc.constantFrom('h84337.example.com', 'h1340180.example.com'),
        ip: fc.constantFrom('10.0.0.1', '10.0.0.2'),
      })
      .map((r) => pod(r.name, { hosts: r.host, paths: '80:/', ip: r.ip }));
    const change = fc.oneof(
      collidingPod.map((p) => ({ put: p })),
      fc.constantFrom(...['p1', 'p2', 'p3', 'p4', 'p5', 'p6'].map((name) => ({ remove: name }))),
    );
    fc.assert(
      fc.property(fc.array(change, { minLength: 1, maxLength: 30 }), (changes) => {
        const config = defaultConfig();
        const pods = new Map<string, Pod>();
        const builder = new IncrementalRouteTable(config);
        const renderer = new IncrementalNginxRenderer();
        const freshRenderer = new IncrementalNginxRenderer();
        for (const c of changes) {
          if ('put' in c) pods.set(c.put.metadata?.name as string, c.put);
          else pods.delete(c.remove);
          const expected = buildRouteTable(config, [...pods.values()], []);
          const conf = renderNginxConf(expected, config);
          assert.equal(renderer.render(builder.update([...pods.values()], []), config), conf);
          assert.equal(freshRenderer.render(expected, config), conf);
        }
      }),
      { numRuns: 300, includeErrorInReport: true },
    );
  });

  it('keep a host with many paths (found through a map) as the reference does while its paths come and go', () => {
    const paths = Array.from({ length: 14 }, (_, i) => `/p${i}`);
    const change = fc.oneof(
      fc
        .record({
          name: fc.constantFrom('a', 'b', 'c', 'd'),
          paths: fc.subarray(paths, { minLength: 1 }),
          host: fc.constantFrom('h.test', 'h.test other.test'),
        })
        .map((r) => ({ put: pod(r.name, { hosts: r.host, paths: r.paths.map((p) => `80:${p}`).join(' ') }) })),
      fc.constantFrom('a', 'b', 'c', 'd').map((name) => ({ remove: name })),
    );
    fc.assert(
      fc.property(fc.array(change, { minLength: 1, maxLength: 30 }), (changes) => {
        const config = defaultConfig();
        const pods = new Map<string, Pod>();
        const builder = new IncrementalRouteTable(config);
        for (const c of changes) {
          if ('put' in c) pods.set(c.put.metadata?.name as string, c.put);
          else pods.delete(c.remove);
          assert.equal(
            JSON.stringify(builder.update([...pods.values()], [])),
            JSON.stringify(buildRouteTable(config, [...pods.values()], [])),
          );
        }
      }),
      { numRuns: 200, includeErrorInReport: true },
    );
  });
});

describe('incremental route table and renderer: stable order', () => {
  it('follow a source in stable order through many changes between two snapshots', () => {
    const config = defaultConfig();
    const podOf = (i: number, v: number): Pod =>
      pod(`p${i}`, {
        hosts: `h${i % 5}.test`,
        paths: `80:/${i % 3}`,
        ip: `10.0.${v % 2}.${i}`,
        created: `2024-01-0${1 + (i % 3)}T00:00:00Z`,
      });
    const edit = fc.record({ i: fc.nat({ max: 39 }), op: fc.constantFrom('put', 'put', 'remove', 'touch') });
    fc.assert(
      fc.property(fc.array(fc.array(edit, { maxLength: 8 }), { minLength: 1, maxLength: 12 }), (rounds) => {
        const pods = new Map<number, Pod>(Array.from({ length: 30 }, (_, i) => [i, podOf(i, 0)]));
        const builder = new IncrementalRouteTable(config);
        builder.update([...pods.values()], []);
        rounds.forEach((edits, round) => {
          for (const { i, op } of edits) {
            if (op === 'remove') pods.delete(i);
            else if (op === 'touch' && pods.has(i)) pods.set(i, structuredClone(pods.get(i) as Pod));
            else if (op === 'put') pods.set(i, podOf(i, round + 1));
          }
          const snapshot = [...pods.values()];
          assert.equal(
            JSON.stringify(builder.update(snapshot, [])),
            JSON.stringify(buildRouteTable(config, snapshot, [])),
            `round ${round + 1}`,
          );
        });
      }),
      { numRuns: 200 },
    );
  });
});

describe('incremental route table and renderer: options, failures and slices', () => {
  it('starts over when the options change', () => {
    const config = defaultConfig();
    const table = buildRouteTable(config, [pod('a', { hosts: 'h.test', paths: '80:/' })], []);
    const renderer = new IncrementalNginxRenderer();
    renderer.render(table, config);
    const other = defaultConfig({ port: '8080' });
    assert.equal(renderer.render(table, other), renderNginxConf(table, other));
  });

  it('fails as the reference does on a value nginx.conf cannot hold, and recovers', () => {
    const config = defaultConfig();
    const good = buildRouteTable(config, [pod('a', { hosts: 'h.test', paths: '80:/' })], []);
    const bad: RouteTable = {
      routes: [{ ...(good.routes[0] as RouteTable['routes'][number]), apiKey: 'a$b' }],
      rejections: [],
    };
    const renderer = new IncrementalNginxRenderer();
    renderer.render(good, config);
    assert.throws(() => renderer.render(bad, config), /refusing to write "a\$b" into nginx\.conf/);
    assert.equal(renderer.render(good, config), renderNginxConf(good, config));
  });

  it('build the same table when run in slices between other work', async () => {
    const config = defaultConfig();
    const pods = Array.from({ length: 2_000 }, (_, i) =>
      pod(`p${i}`, {
        namespace: `ns${i % 7}`,
        hosts: `h${i % 300}.test`,
        paths: `80:/ 3000:/x${i % 3}`,
        ip: `10.0.${i >> 8}.${i & 255}`,
      }),
    );
    const secrets = [apiKeySecret('ns1', 'k'), apiKeySecret('ns2', '')];
    const builder = new IncrementalRouteTable(config);
    const run = await runInSlices(builder.updating(pods, secrets), 0);
    assert.ok(run.pauses > 5, `paused ${run.pauses} times`);
    assert.equal(JSON.stringify(run.value), JSON.stringify(buildRouteTable(config, pods, secrets)));
  });

  it('recovers from a snapshot that makes it throw', () => {
    const config = defaultConfig();
    const builder = new IncrementalRouteTable(config);
    const good = [pod('a', { hosts: 'h.test', paths: '80:/' })];
    builder.update(good, []);
    const broken = { ...pod('b', { hosts: 'x.test', paths: '80:/' }) };
    (broken.metadata as { annotations: unknown }).annotations = { routingHosts: 42, routingPaths: '80:/' };
    assert.throws(() => builder.update([...good, broken], []));
    assert.throws(() => buildRouteTable(config, [...good, broken], []));
    const next = [pod('a', { hosts: 'h2.test', paths: '80:/' })];
    assert.equal(JSON.stringify(builder.update(next, [])), JSON.stringify(buildRouteTable(config, next, [])));
  });
});
