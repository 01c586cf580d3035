import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { deadAddress, startPods, type TestPod } from '../support/pods.js';
import { API_KEY_HEADER, assertThreeWay, Differential, tableOf, type Mode, type RouteSpec } from './harness.js';
import type { RawRequest } from './raw-http.js';

// Generated conformance cases: random route tables (hosts, overlapping prefixes at and
// off segment boundaries, several pods including dead ones, API keys) and random request
// sequences (host case, ports and trailing dots, dot segments, %XX, "//", methods, keys
// right, wrong or missing) through documented nginx, dynamic nginx and the proxy; any
// difference fails with both answers. Bounded: RUNS tables of REQUESTS_PER_RUN requests each.

const RUNS = 60;
const REQUESTS_PER_RUN = 5;
const KEY = 'a2V5LXZhbHVl';

const HOSTS = ['a.test', 'b.test', 'x.example.org'];
const ROUTE_PATHS = ['/', '/a', '/ab', '/a/', '/a/b', '/abc/d', '/b', '/b/c/'];
const SEGMENTS = [
  'a',
  'ab',
  'abc',
  'b',
  'c',
  'd',
  '.',
  '..',
  '',
  '%61',
  '%2e%2e',
  '%2e',
  '%2F',
  '%62',
  'A',
  'x',
  'a%2Fb',
];
const METHODS = ['GET', 'GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'PATCH', 'OPTIONS'];

const routeArb = (pods: readonly { name: string; ip: string; port: number }[]): fc.Arbitrary<RouteSpec> =>
  fc.record({
    host: fc.constantFrom(...HOSTS),
    path: fc.constantFrom(...ROUTE_PATHS),
    pods: fc.uniqueArray(fc.constantFrom(...pods), { minLength: 1, maxLength: 3, selector: (p) => p.name }),
    apiKey: fc.constantFrom<string | null>(null, null, KEY),
  });

const hostArb: fc.Arbitrary<string | null> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .tuple(fc.constantFrom(...HOSTS), fc.boolean(), fc.constantFrom('', ':80', ':8080'), fc.constantFrom('', '', '.'))
      .map(([h, upper, port, dot]) => `${upper ? h.toUpperCase() : h}${dot}${port}`),
  },
  { weight: 1, arbitrary: fc.constantFrom('unknown.test', 'a..test') },
  { weight: 1, arbitrary: fc.constant(null) },
);

const targetArb: fc.Arbitrary<string> = fc
  .tuple(
    fc.array(fc.constantFrom(...SEGMENTS), { minLength: 0, maxLength: 5 }),
    fc.boolean(),
    fc.constantFrom('', '', '?q=1', '?x=/../%2e'),
  )
  .map(([segments, leadingDouble, query]) => `${leadingDouble ? '//' : '/'}${segments.join('/')}${query}`);

const requestArb: fc.Arbitrary<RawRequest> = fc
  .record({
    host: hostArb,
    target: targetArb,
    method: fc.constantFrom(...METHODS),
    key: fc.constantFrom<string | null>(null, KEY, 'wrong'),
    body: fc.constantFrom('', 'payload'),
  })
  .map(({ host, target, method, key, body }) => {
    const headers: [string, string][] = [];
    if (host !== null) headers.push(['Host', host]);
    if (key !== null) headers.push([API_KEY_HEADER, key]);
    const withBody = body !== '' && method !== 'HEAD' && method !== 'GET';
    if (withBody) headers.push(['Content-Length', String(body.length)]);
    return { method, target, headers, ...(withBody ? { body } : {}) };
  });

/** Defines the generated cases, documented nginx against dynamic nginx and the proxy, in `mode`. */
export function generatedConformance(mode: Mode): void {
  let diff: Differential;
  let live: TestPod[] = [];
  let dead: { name: string; ip: string; port: number }[] = [];

  before(async () => {
    live = await startPods('gen', 4, 51);
    dead = [
      { name: 'gen-dead-0', ...(await deadAddress('127.0.0.55')) },
      { name: 'gen-dead-1', ...(await deadAddress('127.0.0.56')) },
    ];
    diff = await Differential.start(tableOf([]), { upstreamKeepalive: mode.upstreamKeepalive });
  });

  after(async () => {
    await diff?.close();
    await Promise.all(live.map((p) => p.close()));
  });

  const title = 'generated tables and requests: documented nginx, dynamic nginx and the proxy agree';
  test(`${title} (${RUNS} tables x ${REQUESTS_PER_RUN} requests)${mode.label}`, async () => {
    // Plain values, so a counterexample prints the routes and not the pods' histories.
    const pods = [...live, ...dead].map(({ name, ip, port }) => ({ name, ip, port }));
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(routeArb(pods), { minLength: 1, maxLength: 6, selector: (r) => `${r.host}${r.path}` }),
        fc.array(requestArb, { minLength: REQUESTS_PER_RUN, maxLength: REQUESTS_PER_RUN }),
        async (routes, requests) => {
          const table = tableOf(routes);
          const specs = routes.map((r) => [r.host, r.path, r.pods.map((p) => p.name), r.apiKey]);
          const label = `table ${JSON.stringify(specs)}\nrequests ${JSON.stringify(requests)}`;
          assertThreeWay(label, await diff.run(table, requests));
        },
      ),
      { numRuns: RUNS },
    );
  });
}
