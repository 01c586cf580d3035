import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import type { Pod, Secret } from '../../src/core/kube-objects.js';
import { sendRaw } from '../conformance/raw-http.js';
import { delay, eventually } from '../support/eventually.js';
import { FakeApiServer } from '../support/fake-api-server.js';
import type { StoredEvent } from '../support/fake-api-store.js';
import { podFor } from '../support/manifests.js';
import { apiKeySecret, pod, type PodSpec } from '../support/objects.js';
import { startPods, type TestPod } from '../support/pods.js';
import { startRouterProcess, type RouterProcess } from '../support/router-process.js';

// What a tenant sees: `k8s-router run` against the fake API server writes an
// events.k8s.io/v1 Event on each pod it does not route, once per rejection, and routing
// never waits for it, whether the events API answers, refuses or hangs.

/** The test pod that answered a request through the router on `port`, if one did. */
async function answeredBy(
  port: number,
  host: string,
  path = '/',
  headers: [string, string][] = [],
): Promise<string | undefined> {
  const outcome = await sendRaw(port, { method: 'GET', target: path, headers: [['Host', host], ...headers] }, 5_000);
  return outcome.kind === 'response' ? outcome.headers.find(([k]) => k.toLowerCase() === 'x-pod')?.[1] : undefined;
}

const POD_NAME = 'k8s-router-e2e-7xk2p';
const MICRO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const base64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

/** Every code the route table can give, read from its source as the README test does. */
const ALL_CODES = [
  ...(
    /export type RejectionCode =([^;]+);/.exec(
      readFileSync(new URL('../../src/core/route-table.ts', import.meta.url), 'utf8'),
    )?.[1] ?? ''
  ).matchAll(/'([A-Z_]+)'/g),
].map((m) => m[1] as string);
/** Codes that never get an Event, and why. */
const NEVER_REPORTED: Record<string, string> = {
  NOT_SELECTED: 'the API server sends only selected pods: the others are not this router’s business',
  TERMINATING: 'the pod is being deleted by its owner: nothing to fix',
};

const routerEnv = (api: FakeApiServer, port: number, extra: Record<string, string> = {}): Record<string, string> => ({
  PORT: String(port),
  LISTEN_ADDRESS: '127.0.0.1',
  HOLD_OFF_MS: '20',
  MAX_DELAY_MS: '100',
  WATCH_BACKOFF_MAX_MS: '1000',
  KUBECONFIG: api.kubeConfigFile(),
  EVENTS_QPS: '50',
  EVENTS_BURST: '20',
  EVENTS_STATE_DELAY_MS: '300',
  POD_NAME,
  ...extra,
});

const regarding = (e: StoredEvent): { name: string; uid: string } => e.body.regarding as { name: string; uid: string };
const note = (e: StoredEvent): string => String(e.body.note);

/** The router under test, its pods, and what the checks ask of them. */
interface EventsRun {
  api: FakeApiServer;
  router: RouterProcess;
  testPod: (i: number) => TestPod;
  /** Whether a request through the router is answered by the pod named `expected`. */
  answersFrom: (host: string, expected: string, path?: string, headers?: [string, string][]) => Promise<boolean>;
  eventsIn: (namespace: string) => StoredEvent[];
}

function eventsRun(api: FakeApiServer, pods: TestPod[], router: RouterProcess, port: number): EventsRun {
  return {
    api,
    router,
    testPod: (i) => pods[i] as TestPod,
    answersFrom: async (host, expected, path = '/', headers = []) =>
      (await answeredBy(port, host, path, headers)) === expected,
    eventsIn: (namespace) => api.events.filter((e) => e.namespace === namespace),
  };
}

/** A pod for each kind of rejection, and the codes of the Events it gets. */
const REJECTION_KINDS: Array<[name: string, spec: PodSpec, codes: string[]]> = [
  ['pending', { hosts: 'pending.test', paths: '80:/', phase: 'Pending' }, ['NOT_RUNNING']],
  ['no-ip', { hosts: 'no-ip.test', paths: '80:/', ip: '' }, ['NO_IP']],
  ['bad-ip', { hosts: 'bad-ip.test', paths: '80:/', ip: '10.0.0.300' }, ['BAD_IP']],
  ['unready', { hosts: 'unready.test', paths: '80:/', ready: false }, ['NOT_READY']],
  ['Bad_Name', { hosts: 'bad-name.test', paths: '80:/' }, ['BAD_NAME']],
  ['half', { hosts: 'half.test' }, ['MISSING_ANNOTATION']],
  ['bad-host', { hosts: 'bad-host.test bad_host!', paths: '80:/' }, ['BAD_HOST']],
  ['no-hosts', { hosts: 'bad_host!', paths: '80:/' }, ['BAD_HOST', 'NO_HOSTS']],
  ['bad-port', { hosts: 'bad-port.test', paths: '80:/ 0:/x' }, ['BAD_PORT']],
  ['typo', { hosts: 'typo.test', paths: '80:/ 9:/nope' }, ['PORT_NOT_DECLARED']],
  ['bad-path', { hosts: 'bad-path.test', paths: '80:/ 80:/a;b' }, ['BAD_PATH']],
  ['dup-path', { hosts: 'dup-path.test', paths: '80:/d 3000:/d' }, ['DUPLICATE_PATH']],
  ['no-paths', { hosts: 'no-paths.test', paths: '80:/a;b' }, ['BAD_PATH', 'NO_PATHS']],
  ['greedy-hosts', { hosts: 'g1.test g2.test g3.test g4.test', paths: '80:/' }, ['TOO_MANY_HOSTS']],
  ['greedy-paths', { hosts: 'greedy-paths.test', paths: '80:/1 80:/2 80:/3 80:/4' }, ['TOO_MANY_PATHS']],
  ['claimant', { hosts: 'claimed.test', paths: '80:/', created: '2024-06-01T00:00:00Z' }, ['ROUTE_CLAIMED']],
  ['leaving', { hosts: 'leaving.test', paths: '80:/', deleting: true }, []],
  // The affinity annotation reaches the router from the cluster, and a value it cannot take is reported.
  [
    'bad-affinity',
    { hosts: 'bad-affinity.test', paths: '80:/', annotations: { routingAffinity: 'sticky' } },
    ['BAD_AFFINITY'],
  ],
  // Pods of one route asking for different affinities: the oldest decides, the other is told.
  ['round-robin-first', { hosts: 'conflict.test', paths: '80:/', created: '2024-01-01T00:00:00Z' }, []],
  [
    'sticky-later',
    {
      hosts: 'conflict.test',
      paths: '80:/',
      created: '2024-06-01T00:00:00Z',
      annotations: { routingAffinity: 'ip' },
    },
    ['AFFINITY_CONFLICT'],
  ],
];

/** An Event as the router writes it about a pod: a Warning from k8s-router regarding the pod, in microseconds. */
function assertEventShape(api: FakeApiServer, event: StoredEvent): void {
  const stored = api.store.get('Pod', event.namespace, regarding(event).name);
  assert.deepEqual(
    { ...event.body, note: undefined, eventTime: undefined, metadata: undefined },
    {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      reportingController: 'k8s-router',
      reportingInstance: POD_NAME,
      action: 'Route',
      reason: 'RouteRejected',
      type: 'Warning',
      regarding: {
        apiVersion: 'v1',
        kind: 'Pod',
        namespace: event.namespace,
        name: regarding(event).name,
        uid: stored?.metadata?.uid,
      },
      note: undefined,
      eventTime: undefined,
      metadata: undefined,
    },
  );
  assert.match(String(event.body.eventTime), MICRO_TIME);
}

async function writesAnEventPerRejectionKind({ api, eventsIn }: EventsRun): Promise<void> {
  api.upsert(
    pod('owner', { namespace: 'owner', hosts: 'claimed.test', paths: '80:/', created: '2024-01-01T00:00:00Z' }),
  );
  for (const [name, spec] of REJECTION_KINDS) api.upsert(pod(name, { namespace: 'kinds', ...spec }));
  const broken: Secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'routing', namespace: 'badkey' },
    data: { 'api-key': 'not base64!' },
  };
  api.upsert(broken);
  api.upsert(pod('locked-out', { namespace: 'badkey', hosts: 'badkey.test', paths: '80:/' }));
  api.upsert(
    pod('unselected', { namespace: 'kinds', hosts: 'unselected.test', paths: '9:/nope', labels: { app: 'other' } }),
  );

  const expected = [
    ...REJECTION_KINDS.flatMap(([name, , codes]) => codes.map((code) => `kinds/${name} ${code}`)),
    'badkey/locked-out BAD_API_KEY',
  ].sort();
  const seen = (): string[] =>
    [...eventsIn('kinds'), ...eventsIn('badkey'), ...eventsIn('owner')]
      .map((e) => `${e.namespace}/${regarding(e).name} ${note(e).split(':')[0]}`)
      .sort();
  await eventually(() => seen().length >= expected.length, `${expected.length} Events`, 15_000).catch(() => undefined);
  assert.deepEqual(seen(), expected);

  const covered = new Set([...expected.map((e) => e.split(' ')[1] as string), ...Object.keys(NEVER_REPORTED)]);
  assert.deepEqual(
    ALL_CODES.filter((code) => !covered.has(code)),
    [],
    'every rejection code is either reported here or never reported, with a reason',
  );

  for (const event of [...eventsIn('kinds'), ...eventsIn('badkey')]) assertEventShape(api, event);
  const typo = eventsIn('kinds').find((e) => regarding(e).name === 'typo');
  assert.equal(typo && note(typo), 'PORT_NOT_DECLARED: 9:/nope: port 9 is not a containerPort of the pod');
}

async function writesOneEventPerRejection({ api, router, testPod, answersFrom, eventsIn }: EventsRun): Promise<void> {
  const rejected = pod('stormy', { namespace: 'storm', hosts: 'stormy.test', paths: '80:/ 9:/nope' });
  api.upsert(rejected);
  await eventually(() => eventsIn('storm').length === 1, 'the Event of the rejected pod');
  for (let i = 0; i < 20; i++) {
    api.upsert(podFor(testPod(0), { namespace: 'storm', hosts: 'storm.test', paths: [`/v${i}`] }));
    await eventually(() => answersFrom('storm.test', testPod(0).name, `/v${i}`), `rebuild ${i} to be routed`);
  }
  await delay(1_000);
  const writesByName = new Map<string, number>();
  for (const w of api.eventWrites) writesByName.set(w.name, (writesByName.get(w.name) ?? 0) + 1);
  const repeated = [...writesByName].filter(([, n]) => n > 1);
  assert.deepEqual(repeated, [], 'no Event was written twice');
  assert.deepEqual(
    eventsIn('storm').map((e) => regarding(e).name),
    ['stormy'],
    'none for the routed pod',
  );
  const stats = router.logs.filter((l) => l.msg === 'route table changed').length;
  assert.ok(stats >= 20, `${stats} tables were built`);
}

async function routesAPodWithoutDeclaredPorts({ api, testPod, answersFrom, eventsIn }: EventsRun): Promise<void> {
  const declared = podFor(testPod(1), { namespace: 'noports', hosts: 'noports.test', paths: ['/queue'] });
  const noPorts: Pod = { ...declared, spec: { containers: [{ name: 'app' }] } };
  api.upsert(noPorts);
  await eventually(
    () => answersFrom('noports.test', testPod(1).name, '/queue'),
    'the pod without declared ports to be routed',
  );
  await delay(500);
  assert.deepEqual(eventsIn('noports'), []);
}

async function putsNoSecretInAnEvent({ api, testPod, answersFrom, eventsIn }: EventsRun): Promise<void> {
  api.upsert(apiKeySecret('keyed', 'supersecret'));
  api.upsert(podFor(testPod(2), { namespace: 'keyed', hosts: 'keyed.test', paths: ['/'] }));
  api.upsert(pod('keyed-typo', { namespace: 'keyed', hosts: 'keyed.test', paths: '80:/other 9:/nope' }));
  await eventually(
    () => answersFrom('keyed.test', testPod(2).name, '/', [['X-ROUTING-API-KEY', base64('supersecret')]]),
    'the locked route',
  );
  await eventually(() => eventsIn('keyed').length === 1, 'the Event in the keyed namespace');
  const everything = JSON.stringify([api.events, api.eventWrites]);
  for (const secret of ['supersecret', base64('supersecret'), 'not base64!']) {
    assert.ok(!everything.includes(secret), `no Event holds ${secret}`);
  }
}

async function keepsRoutingWhenEventsAreRefused({
  api,
  router,
  testPod,
  answersFrom,
  eventsIn,
}: EventsRun): Promise<void> {
  api.refuseEvents('refused');
  const mark = router.logs.length;
  api.upsert(pod('refused-a', { namespace: 'refused', hosts: 'refused-a.test', paths: '80:/ 9:/nope' }));
  api.upsert(pod('refused-b', { namespace: 'refused', hosts: 'refused-b.test', paths: '80:/ 9:/nope' }));
  await eventually(
    () => api.eventWrites.filter((w) => w.namespace === 'refused' && w.status === 403).length >= 3,
    'several refused writes',
    15_000,
  );
  api.upsert(podFor(testPod(3), { namespace: 'refused', hosts: 'refused.test', paths: ['/'] }));
  await eventually(
    () => answersFrom('refused.test', testPod(3).name),
    'a new pod in the refused namespace to be routed',
  );
  const warnings = router.logs.slice(mark).filter((l) => l.cause === 'forbidden');
  assert.equal(warnings.length, 1, `one log line for the cause, not one per attempt: ${JSON.stringify(warnings)}`);
  assert.match(String(warnings[0]?.err), /403/);

  api.allowEvents('refused');
  await eventually(() => eventsIn('refused').length === 2, 'both Events once allowed (after the backoff)', 20_000);
}

async function keepsRoutingWhileEventsHang({ api, testPod, answersFrom, eventsIn }: EventsRun): Promise<void> {
  api.stallEvents(true);
  api.upsert(pod('stalled-typo', { namespace: 'stalled', hosts: 'stalled-typo.test', paths: '80:/ 9:/nope' }));
  await eventually(
    () => api.eventWrites.some((w) => w.namespace === 'stalled' && w.status === 'stalled'),
    'a write that hangs',
  );
  api.upsert(podFor(testPod(0), { namespace: 'stalled', hosts: 'stalled.test', paths: ['/'] }));
  await eventually(() => answersFrom('stalled.test', testPod(0).name), 'a new pod routed while the write hangs');
  assert.deepEqual(eventsIn('stalled'), []);
}

describe('k8s-router run writes a Kubernetes Event on each rejected pod', { concurrency: 1 }, () => {
  let api: FakeApiServer;
  let pods: TestPod[];
  let router: RouterProcess;
  let run: EventsRun;

  before(async () => {
    api = await FakeApiServer.start();
    pods = await startPods('events', 4, 81);
    const port = await pickFreeLoopbackPort();
    router = await startRouterProcess(
      ['--backend', 'proxy'],
      routerEnv(api, port, { MAX_HOSTS_PER_POD: '3', MAX_PATHS_PER_POD: '3' }),
    );
    run = eventsRun(api, pods, router, port);
  });

  after(async () => {
    const exit = await router?.stop();
    await Promise.all((pods ?? []).map((p) => p.close()));
    await api?.close();
    assert.equal(exit, 0, 'the router exits 0 on SIGTERM');
  });

  it('writes an Event for each kind of rejection that concerns a pod, with the note tenants read', () =>
    writesAnEventPerRejectionKind(run));

  it('writes exactly one Event per rejection across many rebuilds, and none for routed pods', () =>
    writesOneEventPerRejection(run));

  it('routes a pod that declares no container ports, and writes it no Event', () =>
    routesAPodWithoutDeclaredPorts(run));

  it('puts no API key or Secret value in any Event', () => putsNoSecretInAnEvent(run));

  it('keeps routing when Events are refused (403): logs once, counts, and writes them once allowed', () =>
    keepsRoutingWhenEventsAreRefused(run));

  it('keeps routing while the events API hangs', () => keepsRoutingWhileEventsHang(run));
});

describe('two routers in one pod (public and private) write one Event per rejection', { concurrency: 1 }, () => {
  let api: FakeApiServer;
  let routers: RouterProcess[] = [];

  before(async () => {
    api = await FakeApiServer.start();
    routers = await Promise.all(
      (['public', 'private'] as const).map(async (side) =>
        startRouterProcess(
          ['--backend', 'proxy'],
          routerEnv(api, await pickFreeLoopbackPort(), {
            HOSTS_ANNOTATION: `${side}Hosts`,
            PATHS_ANNOTATION: `${side}Paths`,
            API_KEY_SECRET_LOCATION: `routing:${side}-api-key`,
          }),
        ),
      ),
    );
  });

  after(async () => {
    const exits = await Promise.all(routers.map((r) => r.stop()));
    await api?.close();
    assert.deepEqual(exits, [0, 0]);
  });

  it(
    'each reports its own annotations; a rejection both see is one Event; ' + 'a pod for the other router is not news',
    async () => {
      const annotations = {
        publicHosts: 'test.k8s.com',
        publicPaths: '3000:/public 9:/pub',
        privateHosts: 'test.k8s.local',
        privatePaths: '3000:/internal 9:/priv',
      };
      api.upsert(pod('both-typo', { namespace: 'mp', annotations }));
      api.upsert(pod('both-unready', { namespace: 'mp', annotations, ready: false }));
      api.upsert(
        pod('private-only', {
          namespace: 'mp',
          annotations: { privateHosts: 'only.k8s.local', privatePaths: '3000:/only' },
        }),
      );
      const notes = (): string[] =>
        api.events.map((e) => `${(e.body.regarding as { name: string }).name} ${String(e.body.note)}`).sort();
      await eventually(() => notes().length >= 3, 'the Events of both routers', 15_000).catch(() => undefined);
      await delay(1_000);
      assert.deepEqual(notes(), [
        'both-typo PORT_NOT_DECLARED: 9:/priv: port 9 is not a containerPort of the pod',
        'both-typo PORT_NOT_DECLARED: 9:/pub: port 9 is not a containerPort of the pod',
        'both-unready NOT_READY: Ready=False: pod is not ready (Ready condition is False)',
      ]);
      const unready = api.eventWrites
        .filter((w) => w.name.startsWith('both-unready.'))
        .map((w) => w.status)
        .sort();
      assert.deepEqual(unready, [201, 409], 'both routers tried; the API server kept one');
    },
  );
});
