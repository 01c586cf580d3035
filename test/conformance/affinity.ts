import assert from 'node:assert/strict';
import { SocketAddress } from 'node:net';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Route, RouteTable } from '../../src/core/route-table.js';
import { Balancers } from '../../proxy/balancer.js';
import { crc32Long, findChashPoint, initChashPoints, MAX_CHASH_TRIES } from '../../proxy/consistent-hash.js';
import { ngxInet6Ntop, remoteAddrText } from '../../proxy/remote-addr.js';
import type { ProxyDataPlane } from '../../proxy/server.js';
import { podTarget } from '../../src/core/pod-target.js';
import { deadAddress, startPod, type ReceivedRequest, type TestPod } from '../support/pods.js';
import { seededRandom } from '../support/seeded-random.js';
import {
  startDynamic,
  startNginx,
  startProxyFor,
  tableOf,
  type Mode,
  type NginxUnderTest,
  type PairOptions,
  type RouteSpec,
} from './harness.js';
import { sendRaw, type RawOutcome } from './raw-http.js';

// Session affinity, every data plane against nginx: the same route tables with
// `routingAffinity: ip`, the same client addresses, the same pod chosen.
//
// - First picks: thousands of generated client addresses (IPv4, and IPv6 in the forms
//   nginx rewrites) on generated pod sets (2 to 10 pods, ports incl. 80, IPv6 pods). nginx's
//   realip module takes $remote_addr from the X-Client-Address header, so nginx hashes any
//   address; the proxy is asked through the very function its request path calls
//   (PeerGroup.begin(socket.remoteAddress).next()), with the text Node gives for that
//   address. nginx's $remote_addr comes back in a header, to check the proxy's text of it.
// - Pods added and removed: only the clients of the pod that went move; when a pod comes,
//   only clients that move to it move; every plane agrees.
// - The real request path: requests from real source addresses (a client may bind any
//   127.a.b.c on Linux) through each plane, on tables with dead pods, from fresh balancer
//   state, compared request by request: failed pods, the walk to the next points, retries,
//   the fall back to round robin after 20 points, and 502 when no pod is left.
//
// Every plane is an entry of PLANES; nginx is the reference. A plane added later (the
// dynamic nginx mode) gets every comparison by being added there.

/** What a first request from a client address got. */
export interface FirstPick {
  pod: string;
  /** The text the plane hashed for the client, as nginx writes $remote_addr. */
  remoteAddr: string;
}

export interface RunningPlane {
  readonly name: string;
  readonly port: number;
  /** Serves `table` from fresh balancer state (round-robin positions, failure marks). */
  applyFresh(table: RouteTable): Promise<void>;
  /** For each client address, the pod a request to `route` of the served table goes to. */
  firstPicks(route: Route, clients: readonly string[]): Promise<FirstPick[]>;
  close(): Promise<void>;
}

export interface AffinityPlane {
  readonly name: string;
  start(table: RouteTable, options: PairOptions): Promise<RunningPlane>;
}

/** nginx gets any client address from this header, and says which it hashed in another. */
const CLIENT_HEADER = 'X-Client-Address';
const NGINX_TEST_DIRECTIVES = [
  'set_real_ip_from 127.0.0.0/8;',
  `real_ip_header ${CLIENT_HEADER};`,
  'proxy_set_header X-Remote-Addr $remote_addr;',
];

async function sendTo(
  port: number,
  route: Route,
  headers: [string, string][] = [],
  localAddress?: string,
): Promise<RawOutcome> {
  return sendRaw(
    port,
    { method: 'GET', target: route.path, headers: [['Host', route.host], ...headers] },
    10_000,
    localAddress,
  );
}

const header = (outcome: RawOutcome, name: string): string | undefined =>
  outcome.kind === 'response' ? outcome.headers.find(([k]) => k.toLowerCase() === name)?.[1] : undefined;

/** The status and the pod that answered, or that nobody did. */
const answerOf = (outcome: RawOutcome): string =>
  outcome.kind === 'response' ? `${outcome.status} ${header(outcome, 'x-pod') ?? ''}` : 'dropped';

/** nginx's first picks, from requests whose X-Client-Address it takes as the client's address. */
async function nginxFirstPicks(
  nginx: { port: number },
  route: Route,
  clients: readonly string[],
): Promise<FirstPick[]> {
  const picks: FirstPick[] = [];
  for (const client of clients) {
    const outcome = await sendTo(nginx.port, route, [[CLIENT_HEADER, client]]);
    const pod = header(outcome, 'x-pod');
    if (outcome.kind !== 'response' || pod === undefined)
      throw new Error(`nginx did not answer from a pod for ${client}: ${JSON.stringify(outcome)}`);
    const received = JSON.parse(outcome.body.toString('latin1')) as ReceivedRequest;
    const remoteAddr = received.headers.find(([k]) => k.toLowerCase() === 'x-remote-addr')?.[1] ?? '';
    picks.push({ pod, remoteAddr });
  }
  return picks;
}

/** The address text Node gives for a client (socket.remoteAddress and SocketAddress share libuv's inet_ntop). */
export function nodeAddressText(address: string): string {
  return new SocketAddress({ address, family: address.includes(':') ? 'ipv6' : 'ipv4' }).address;
}

export const NGINX_PLANE: AffinityPlane = {
  name: 'nginx',
  async start(table, options) {
    const nginx: NginxUnderTest = await startNginx(table, { ...options, nginxHttpDirectives: NGINX_TEST_DIRECTIVES });
    return {
      name: 'nginx',
      port: nginx.port,
      applyFresh: (t) => nginx.applyFresh(t),
      firstPicks: (route, clients) => nginxFirstPicks(nginx, route, clients),
      close: () => nginx.close(),
    };
  },
};

export const PROXY_PLANE: AffinityPlane = {
  name: 'proxy',
  async start(table, options) {
    let proxy: ProxyDataPlane = await startProxyFor(options);
    await proxy.apply(table);
    let served = table;
    return {
      name: 'proxy',
      get port() {
        return proxy.port;
      },
      async applyFresh(t) {
        await proxy.close();
        proxy = await startProxyFor(options);
        await proxy.apply(t);
        served = t;
      },
      async firstPicks(route, clients) {
        // The balancer of a fresh proxy for the served table, asked as the request path asks it.
        const groups = Balancers.empty().next(served.routes, { failTimeoutMs: 10_000 });
        const group = groups.groupFor(route);
        return clients.map((client) => {
          const seen = nodeAddressText(client);
          const peer = group.begin(seen).next();
          if (peer === null) throw new Error(`the proxy chose no pod for ${client}`);
          return { pod: peer.backend.pod, remoteAddr: remoteAddrText(seen) };
        });
      },
      close: () => proxy.close(),
    };
  },
};

/** Dynamic nginx: the consistent hash in Lua, fed the same client addresses through realip. */
export const DYNAMIC_PLANE: AffinityPlane = {
  name: 'dynamic nginx',
  async start(table, options) {
    const nginx = await startDynamic(table, { ...options, nginxHttpDirectives: NGINX_TEST_DIRECTIVES });
    return {
      name: 'dynamic nginx',
      port: nginx.port,
      applyFresh: (t) => nginx.applyFresh(t),
      firstPicks: (route, clients) => nginxFirstPicks(nginx, route, clients),
      close: () => nginx.close(),
    };
  },
};

/** The data planes compared; the first is the reference. */
export const PLANES: readonly AffinityPlane[] = [NGINX_PLANE, DYNAMIC_PLANE, PROXY_PLANE];

// Generated inputs, from a seed that a failure prints (AFFINITY_SEED replays or changes it).

const SEED =
  process.env.AFFINITY_SEED === 'random'
    ? Math.floor(Math.random() * 2 ** 31)
    : Number(process.env.AFFINITY_SEED ?? 20261126);

type Random = () => number;
const below = (random: Random, n: number): number => Math.floor(random() * n);

/** An IPv4 address nginx's realip takes (inet_addr refuses 255.255.255.255 as INADDR_NONE). */
function ipv4(random: Random): string {
  for (;;) {
    const octets = Array.from({ length: 4 }, () => below(random, 256));
    if (octets.some((o) => o !== 255)) return octets.join('.');
  }
}

/** IPv6 bytes of the shapes whose text nginx and Node write differently, or not. */
function ipv6Bytes(random: Random): Uint8Array {
  const bytes = new Uint8Array(16);
  const shape = below(random, 6);
  for (let i = 0; i < 16; i++) bytes[i] = below(random, 256);
  if (shape === 0) return bytes;
  if (shape === 1) {
    // ::ffff:a.b.c.d, IPv4-mapped.
    bytes.fill(0, 0, 10);
    bytes[10] = 0xff;
    bytes[11] = 0xff;
    return bytes;
  }
  if (shape === 2) {
    // Six or seven leading zero groups: ::a.b.c.d, ::x.
    bytes.fill(0, 0, below(random, 2) === 0 ? 12 : 14);
    return bytes;
  }
  // Zero groups here and there: runs of different lengths, ties between runs.
  for (let g = 0; g < 8; g++) {
    if (random() < 0.5) {
      bytes[2 * g] = 0;
      bytes[2 * g + 1] = 0;
    } else if (random() < 0.3) {
      bytes[2 * g] = 0;
    }
  }
  return bytes;
}

/** The text of IPv6 bytes in one of the forms a client or a header may carry. */
function ipv6Text(random: Random, bytes: Uint8Array): string {
  const groups = Array.from({ length: 8 }, (_, g) =>
    ((bytes[2 * g] as number) * 256 + (bytes[2 * g + 1] as number)).toString(16),
  );
  switch (below(random, 3)) {
    case 0:
      return ngxInet6Ntop(bytes);
    case 1:
      return nodeAddressText(ngxInet6Ntop(bytes));
    default:
      return groups.map((g) => g.padStart(4, '0').toUpperCase()).join(':');
  }
}

export function clientAddresses(random: Random, count: number): string[] {
  return Array.from({ length: count }, () => (random() < 0.6 ? ipv4(random) : ipv6Text(random, ipv6Bytes(random))));
}

/** Distinct picks of `n` from `items`. */
function sample<T>(random: Random, items: readonly T[], n: number): T[] {
  const pool = [...items];
  const out: T[] = [];
  while (out.length < n && pool.length > 0) out.push(pool.splice(below(random, pool.length), 1)[0] as T);
  return out;
}

type PodRef = { name: string; ip: string; port: number };

const refOf = (p: TestPod | PodRef): PodRef => ({ name: p.name, ip: p.ip, port: p.port });

interface AffinityRig {
  live: TestPod[];
  dead: PodRef[];
  planes: RunningPlane[];
}

/**
 * Starts the pods, dead addresses and planes of the suite, each kept in `rig` at once to be closed however start ends.
 */
async function startAffinityRig(rig: AffinityRig, mode: Mode, options: PairOptions): Promise<void> {
  // Pod addresses in 127.0.0.61-98: six on free ports, two on port 80 (written without
  // it), two on IPv6 (::1); dead ones (nothing listens) likewise.
  for (let i = 0; i < 6; i++) rig.live.push(await startPod(`aff-${i}`, `127.0.0.${61 + i}`));
  // Port 80 is fixed: the keep-alive suite, which may run at the same time, takes other addresses.
  const port80 = mode.upstreamKeepalive > 0 ? [96, 97, 98] : [67, 68, 79];
  rig.live.push(await startPod('aff-port80-0', `127.0.0.${port80[0]}`, { port: 80 }));
  rig.live.push(await startPod('aff-port80-1', `127.0.0.${port80[1]}`, { port: 80 }));
  rig.live.push(await startPod('aff-v6-0', '::1'));
  rig.live.push(await startPod('aff-v6-1', '::1'));
  // (127.0.0.71-73 and 81-94 hold other suites' pods, on ports a dead address could have.)
  for (const [i, last] of [69, 70, 74, 75, 76, 77, 78, 95].entries())
    rig.dead.push({ name: `aff-dead-${i}`, ...(await deadAddress(`127.0.0.${last}`)) });
  rig.dead.push({ name: 'aff-dead-port80', ip: `127.0.0.${port80[2]}`, port: 80 });
  rig.dead.push({ name: 'aff-dead-v6', ...(await deadAddress('::1')) });
  for (const plane of PLANES) rig.planes.push(await plane.start(tableOf([]), options));
}

/** Applies `table` to every plane from fresh state. */
async function serveFresh(planes: RunningPlane[], table: RouteTable): Promise<void> {
  for (const plane of planes) await plane.applyFresh(table);
}

async function firstPicksAgree(
  rig: AffinityRig,
  firstPickTables: number,
  addressesPerRoute: number,
  t: TestContext,
): Promise<void> {
  const random = seededRandom(SEED);
  let compared = 0;
  for (let t = 0; t < firstPickTables; t++) {
    const specs: RouteSpec[] = Array.from({ length: 8 }, (_, r) => ({
      host: 'affinity.test',
      path: `/r${r}`,
      pods: sample(random, rig.live, 2 + below(random, rig.live.length - 1)).map(refOf),
      affinity: 'ip' as const,
    }));
    const table = tableOf(specs);
    await serveFresh(rig.planes, table);
    for (const route of table.routes) {
      const clients = clientAddresses(random, addressesPerRoute);
      const [reference, ...others] = await Promise.all(rig.planes.map((p) => p.firstPicks(route, clients)));
      // nginx hashed the address the proxy's text of it says.
      (reference as FirstPick[]).forEach((pick, i) =>
        assert.equal(
          remoteAddrText(nodeAddressText(clients[i] as string)),
          pick.remoteAddr,
          `$remote_addr of ${clients[i]}`,
        ),
      );
      for (const [i, picks] of others.entries()) {
        const name = (rig.planes[i + 1] as RunningPlane).name;
        const differing = clients.flatMap((c, k) =>
          picks[k]?.pod === reference?.[k]?.pod ? [] : [`${c}: nginx ${reference?.[k]?.pod}, ${name} ${picks[k]?.pod}`],
        );
        assert.deepEqual(
          differing,
          [],
          `${name} differs on ${route.path} ${route.backends.map((b) => podTarget(b.ip, b.port)).join(' ')}`,
        );
      }
      compared += clients.length;
    }
  }
  assert.equal(compared, firstPickTables * 8 * addressesPerRoute);
  t.diagnostic(`${compared} client addresses compared on ${firstPickTables * 8} pod sets`);
}

async function onlyClientsOfAGonePodMove(rig: AffinityRig): Promise<void> {
  const random = seededRandom(SEED + 1);
  const clients = clientAddresses(random, 300);
  for (let round = 0; round < 4; round++) {
    const before = sample(random, rig.live, 3 + below(random, 4)).map(refOf);
    const gone = before[below(random, before.length)] as PodRef;
    const newcomer = sample(
      random,
      rig.live.filter((p) => !before.some((b) => b.name === p.name)),
      1,
    ).map(refOf);
    const after = [...before.filter((p) => p !== gone), ...newcomer];
    const picksOf = async (pods: PodRef[]): Promise<FirstPick[][]> => {
      const table = tableOf([{ host: 'affinity.test', path: '/', pods, affinity: 'ip' }]);
      await serveFresh(rig.planes, table);
      return Promise.all(rig.planes.map((p) => p.firstPicks(table.routes[0] as Route, clients)));
    };
    const first = await picksOf(before);
    const fewer = await picksOf(before.filter((p) => p !== gone));
    const more = await picksOf(after);
    for (const picks of [first, fewer, more]) {
      for (const [i, plane] of rig.planes.entries())
        assert.deepEqual(
          picks[i]?.map((p) => p.pod),
          picks[0]?.map((p) => p.pod),
          `${plane.name} agrees with nginx`,
        );
    }
    const [a, b, c] = [first[0], fewer[0], more[0]] as FirstPick[][];
    clients.forEach((client, k) => {
      const was = a?.[k]?.pod;
      if (was !== gone.name) assert.equal(b?.[k]?.pod, was, `${client} keeps ${was} when ${gone.name} goes`);
      if (c?.[k]?.pod !== b?.[k]?.pod)
        assert.equal(c?.[k]?.pod, newcomer[0]?.name, `${client} moves only to the newcomer`);
    });
    const moved = clients.filter((_, k) => a?.[k]?.pod !== b?.[k]?.pod).length;
    assert.equal(moved, a?.filter((p) => p.pod === gone.name).length, 'exactly the clients of the pod that went moved');
  }
}

/**
 * Clients at 127.a.b.c for `route`: first some whose walks start on each dead pod, so that every dead pod is marked
 * failed, then clients whose walks pass more than 20 points of failed pods (nginx then falls back to round robin),
 * then any. `fallbacks` counts the second kind.
 */
function clientsFor(route: Route, dead: PodRef[], random: () => number): { clients: string[]; fallbacks: number } {
  const clients: string[] = [];
  const points = initChashPoints(route.backends.map((b) => podTarget(b.ip, b.port)));
  const deadTargets = new Set(
    route.backends
      .filter((b) => dead.some((d) => d.ip === b.ip && d.port === b.port))
      .map((b) => podTarget(b.ip, b.port)),
  );
  const candidates = Array.from(
    { length: 3000 },
    () => `127.${1 + below(random, 254)}.${below(random, 256)}.${1 + below(random, 254)}`,
  );
  const startOf = (client: string): number => findChashPoint(points, crc32Long(client));
  const serverAt = (i: number): string => points.servers[points.server[i % points.number] as number] as string;
  for (const target of deadTargets) {
    const c = candidates.find((x) => serverAt(startOf(x)) === target);
    if (c !== undefined) clients.push(c);
  }
  const deadRun = (x: string): number => {
    let n = 0;
    while (n < points.number && deadTargets.has(serverAt(startOf(x) + n))) n++;
    return n;
  };
  // Walks that fall back to round robin; those that would end on the same pod if they
  // went on, so that round robin (which takes turns) sends some of them elsewhere.
  const long = candidates.filter((x) => deadRun(x) > MAX_CHASH_TRIES && deadRun(x) < points.number);
  const endOf = (x: string): string => serverAt(startOf(x) + deadRun(x));
  const commonEnd = long
    .map(endOf)
    .sort()
    .find((e, i, all) => all.lastIndexOf(e) - i >= 3);
  long.splice(0, long.length, ...long.filter((x) => endOf(x) === commonEnd).slice(0, 4));
  return { clients: [...clients, ...long, ...sample(random, candidates, 12)], fallbacks: long.length };
}

async function requestPathAgrees(rig: AffinityRig, pathTables: number, t: TestContext): Promise<void> {
  const random = seededRandom(SEED + 2);
  let requests = 0;
  let fallbacks = 0;
  for (let t = 0; t < pathTables; t++) {
    // Two routes of any size and any number of dead pods; one of ten pods with two alive,
    // where walks often pass more than 20 points of failed pods; one with every pod dead.
    const specs: RouteSpec[] = Array.from({ length: 4 }, (_, r) => {
      const size = r === 2 ? 10 : 2 + below(random, 9);
      const deadCount = r === 3 ? size : r === 2 ? 8 : below(random, size);
      return {
        host: 'affinity.test',
        path: `/p${r}`,
        pods: [...sample(random, rig.dead, deadCount), ...sample(random, rig.live, size - deadCount)],
        affinity: 'ip' as const,
      };
    });
    const table = tableOf(specs);
    const order: { route: Route; client: string }[] = [];
    for (const route of table.routes) {
      const chosen = clientsFor(route, rig.dead, random);
      fallbacks += chosen.fallbacks;
      for (const client of chosen.clients) order.push({ route, client });
    }
    await serveFresh(rig.planes, table);
    const results: string[][] = [];
    for (const plane of rig.planes) {
      const seen: string[] = [];
      for (const { route, client } of order) {
        const outcome = await sendTo(plane.port, route, [], client);
        seen.push(`${route.path} from ${client}: ${answerOf(outcome)}`);
      }
      results.push(seen);
    }
    for (const [i, seen] of results.entries()) {
      assert.deepEqual(
        seen,
        results[0],
        `${(rig.planes[i] as RunningPlane).name} answers as nginx, request for request, on ` +
          JSON.stringify(specs.map((s) => s.pods.map((p) => p.name))),
      );
    }
    requests += order.length;
  }
  assert.ok(requests > pathTables * 4 * 12, `${requests} requests compared`);
  assert.ok(fallbacks > 0, 'some walks passed more than 20 points of failed pods');
  t.diagnostic(`${requests} requests through each plane, ${fallbacks} of them past more than 20 points of failed pods`);
}

/** Runs the affinity suite in `mode`, over PLANES. */
export function affinityConformance(
  mode: Mode,
  {
    firstPickTables,
    addressesPerRoute,
    pathTables,
  }: { firstPickTables: number; addressesPerRoute: number; pathTables: number },
): void {
  const options: PairOptions = { upstreamKeepalive: mode.upstreamKeepalive };
  const rig: AffinityRig = { live: [], dead: [], planes: [] };

  before(async () => {
    await startAffinityRig(rig, mode, options);
  });

  after(async () => {
    await Promise.all(rig.planes.map((p) => p.close()));
    await Promise.all(rig.live.map((p) => p.close()));
  });

  const label = (what: string): string => `${what} (seed ${SEED})${mode.label}`;

  describe(label('session affinity: every data plane picks the pod nginx picks'), () => {
    it(
      'for generated client addresses on generated pod sets ' +
        `(${firstPickTables} tables of 8 routes, ${addressesPerRoute} addresses each)`,
      (t) => firstPicksAgree(rig, firstPickTables, addressesPerRoute, t),
    );

    it('when pods come and go: only the clients of a pod that goes move, and only to a pod that comes', () =>
      onlyClientsOfAGonePodMove(rig));

    it(
      'through the request path from real client addresses, with dead pods: ' +
        `the same pod, retry for retry (${pathTables} tables)`,
      (t) => requestPathAgrees(rig, pathTables, t),
    );
  });
}
