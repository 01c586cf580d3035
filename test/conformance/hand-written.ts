import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { deadAddress, startPod, type TestPod } from '../support/pods.js';
import { assertThreeWay, Differential, describeDifference, tableOf, type Mode } from './harness.js';
import type { RawRequest } from './raw-http.js';

// Hand-written conformance cases: each routing rule (host, longest prefix, 444, 404, API
// key, round robin, retries, headers to the pod, upgrades; and each nginx detail found on
// the way) as a request sequence through documented nginx, dynamic nginx and the proxy,
// which must observe the same thing: status or dropped connection, the pod that answered
// and what it received. Each sequence starts from fresh round-robin and failure state.

const KEY = 'c3VwZXJzZWNyZXQ=';
const TIMEOUT_SECONDS = 1;

/** Runs requests through every plane, asserts they agree, and pins nginx's statuses when given. */
type Agree = (
  name: string,
  requests: (RawRequest | Buffer)[],
  expectStatuses?: (number | 'dropped')[],
) => Promise<void>;

const get = (host: string | null, target: string, headers: [string, string][] = [], method = 'GET'): RawRequest => ({
  method,
  target,
  headers: host === null ? headers : [['Host', host], ...headers],
});

/** Starts the pods of the cases (each pushed to `pods` at once, to be closed however start ends) and the planes. */
async function startPlanes(
  mode: Mode,
  pods: TestPod[],
): Promise<{ diff: Differential; table: ReturnType<typeof tableOf> }> {
  const live = async (name: string, ip: string, behaviour: TestPod['behaviour'] = 'echo'): Promise<TestPod> => {
    const pod = await startPod(name, ip, { behaviour });
    pods.push(pod);
    return pod;
  };
  const [root0, root1, nodejs, deep, api, keyed, f0, f1, h0, h1, hs] = [
    await live('root-0', '127.0.0.11'),
    await live('root-1', '127.0.0.12'),
    await live('nodejs-0', '127.0.0.13'),
    await live('deep-0', '127.0.0.14'),
    await live('api-0', '127.0.0.15'),
    await live('keyed-0', '127.0.0.16'),
    await live('flaky-0', '127.0.0.17', 'reset-before-response'),
    await live('flaky-1', '127.0.0.18'),
    await live('hang-0', '127.0.0.19', 'hang'),
    await live('hang-1', '127.0.0.20'),
    await live('hang-single', '127.0.0.21', 'hang'),
  ] as TestPod[] as [TestPod, TestPod, TestPod, TestPod, TestPod, TestPod, TestPod, TestPod, TestPod, TestPod, TestPod];
  const dead0 = { name: 'dead-0', ...(await deadAddress('127.0.0.22')) };
  const dead1 = { name: 'dead-1', ...(await deadAddress('127.0.0.23')) };
  const deadAt = async (name: string, ip: string): Promise<{ name: string; ip: string; port: number }> => ({
    name,
    ...(await deadAddress(ip)),
  });
  const manyDead = await Promise.all([0, 1, 2, 3].map((i) => deadAt(`many-dead-${i}`, `127.0.0.${140 + i}`)));
  const cut = [await live('cut-0', '127.0.0.145', 'reset-mid-response'), await live('cut-1', '127.0.0.146')];
  const table = tableOf([
    { host: 'a.test', path: '/', pods: [root0, root1] },
    { host: 'a.test', path: '/nodejs', pods: [nodejs] },
    { host: 'a.test', path: '/nodejs/deep', pods: [deep] },
    { host: 'a.test', path: '/api/', pods: [api] },
    { host: 'a.test', path: '/key', pods: [keyed], apiKey: KEY },
    { host: 'b.test', path: '/only', pods: [nodejs] },
    { host: 'b.test', path: '/dead', pods: [dead0, dead1] },
    { host: 'b.test', path: '/single-dead', pods: [dead0] },
    { host: 'b.test', path: '/mix', pods: [dead0, root0, root1] },
    { host: 'b.test', path: '/many-dead', pods: [...manyDead, root0] },
    { host: 'b.test', path: '/cut', pods: cut },
    { host: 'b.test', path: '/flaky', pods: [f0, f1] },
    { host: 'b.test', path: '/single-flaky', pods: [f0] },
    { host: 'b.test', path: '/hang', pods: [h0, h1] },
    { host: 'b.test', path: '/single-hang', pods: [hs] },
  ]);
  const diff = await Differential.start(table, {
    upstreamTimeoutSeconds: TIMEOUT_SECONDS,
    upstreamKeepalive: mode.upstreamKeepalive,
  });
  return { diff, table };
}

/** Defines the hand-written cases, documented nginx against dynamic nginx and the proxy, in `mode`. */
export function handWrittenConformance(mode: Mode): void {
  let diff: Differential;
  const pods: TestPod[] = [];
  let table: ReturnType<typeof tableOf>;

  before(async () => {
    ({ diff, table } = await startPlanes(mode, pods));
  });

  after(async () => {
    await diff?.close();
    await Promise.all(pods.map((p) => p.close()));
  });

  async function agree(
    name: string,
    requests: (RawRequest | Buffer)[],
    expectStatuses?: (number | 'dropped')[],
  ): Promise<void> {
    const observed = await diff.run(table, requests);
    assertThreeWay(name, observed);
    const { nginx } = observed;
    if (expectStatuses !== undefined) {
      // Pins what nginx did, so a change in nginx or in the suite shows up here too.
      assert.deepStrictEqual(
        nginx.map((o) => (o.answer === 'dropped' ? 'dropped' : o.status)),
        expectStatuses,
        describeDifference(`${name}: statuses`, expectStatuses, nginx),
      );
    }
  }

  hostCases(mode, agree);
  pathCases(mode, agree);
  balancingAndKeyCases(mode, agree);
  upstreamCases(mode, agree);
  requestCases(mode, agree);
}

/** The Host header and the request-target. */
function hostCases(mode: Mode, agree: Agree): void {
  test(`host: case, port and one trailing dot are ignored${mode.label}`, async () => {
    await agree(
      'host forms',
      ['A.TEST', 'a.test:8080', 'a.test.', 'a.test.:1', 'A.Test.:65535'].map((h) => get(h, '/nodejs')),
      [200, 200, 200, 200, 200],
    );
  });

  test(`host: malformed hosts are 400, unknown hosts are dropped${mode.label}`, async () => {
    await agree(
      'bad hosts',
      [
        get('a..test', '/'),
        get('', '/'),
        get('a.test/x', '/'),
        get('a.test..', '/'),
        get('a.:1.', '/'),
        get('c.test', '/'),
        get('a.test.x', '/'),
      ],
      [400, 400, 400, 400, 'dropped', 'dropped', 'dropped'],
    );
  });

  test(`host: missing in HTTP/1.1 is 400, missing in HTTP/1.0 is dropped, twice is 400${mode.label}`, async () => {
    await agree(
      'host presence',
      [
        get(null, '/nodejs'),
        { ...get(null, '/nodejs'), version: '1.0' },
        { ...get('a.test', '/nodejs'), version: '1.0' },
        get('a.test', '/nodejs', [['Host', 'a.test']]),
        get('a.test', '/nodejs', [['host', 'c.test']]),
      ],
      [400, 'dropped', 200, 400, 400],
    );
  });

  test(`host: an absolute request-target names the host and the pod gets the path only${mode.label}`, async () => {
    await agree(
      'absolute form',
      [get('c.test', 'http://A.test:99/nodejs/x?q=1'), get(null, 'http://a.test/nodejs', [], 'GET')],
      [200, 400],
    );
  });
}

/** Paths: prefixes, normalization, 404 and the slash redirect. */
function pathCases(mode: Mode, agree: Agree): void {
  test(`path: longest prefix on the normalized path, original URI forwarded${mode.label}`, async () => {
    await agree(
      'prefixes',
      [
        '/nodejsfoo',
        '/nodejs/deep',
        '/nodejs/deeper/x',
        '/nodejs/../nodejs/deep/',
        '/%6Eodejs/d%65ep?x=%2e%2e',
        '//nodejs///deep',
        '/nodejs/./deep',
        '/nodejs%2Fdeep',
        '/NODEJS',
        '/x/../nodejs',
        '/nodejs/deep/..',
        '/nodejs/deep/.',
        '/a%3F/..%2F/nodejs',
      ].map((p) => get('a.test', p)),
    );
  });

  test(`path: above the root, bad escapes and NUL are 400${mode.label}`, async () => {
    await agree(
      'bad paths',
      ['/..', '/a/../..', '/%2e%2e/x', '/%', '/a%2', '/%zz', '/a%00b', '/nodejs/../../x'].map((p) => get('a.test', p)),
      [400, 400, 400, 400, 400, 400, 400, 400],
    );
  });

  test(`path: a known host without a matching path is 404${mode.label}`, async () => {
    await agree(
      '404',
      [get('b.test', '/'), get('b.test', '/onl'), get('b.test', '/onlyx'), get('b.test', '/ONLY')],
      [404, 404, 200, 404],
    );
  });

  test(`path: a route ending in "/" redirects its path without the slash (301, query kept)${mode.label}`, async () => {
    await agree(
      'redirect',
      [
        get('a.test', '/api'),
        get('A.test:5', '/api?x=1&y'),
        get('a.test', '/api/'),
        get('a.test', '/api%2F'),
        get('a.test', '/api', [], 'HEAD'),
        get('a.test', '/apix'),
      ],
      [301, 301, 200, 200, 301, 200],
    );
  });
}

/** Round robin and API keys. */
function balancingAndKeyCases(mode: Mode, agree: Agree): void {
  test(`round robin: pods in name order, per route${mode.label}`, async () => {
    await agree('round robin', [
      get('a.test', '/'),
      get('a.test', '/x'),
      get('a.test', '/nodejs'),
      get('a.test', '/y'),
      get('a.test', '/z'),
    ]);
  });

  test(`API key: missing, wrong, empty, right, sent twice${mode.label}`, async () => {
    await agree(
      'api key',
      [
        get('a.test', '/key'),
        get('a.test', '/key', [['X-ROUTING-API-KEY', 'wrong']]),
        get('a.test', '/key', [['X-ROUTING-API-KEY', '']]),
        get('a.test', '/key', [['X-ROUTING-API-KEY', KEY.toLowerCase()]]),
        get('a.test', '/key', [['x-routing-api-key', KEY]]),
        get('a.test', '/key', [
          ['X-ROUTING-API-KEY', KEY],
          ['X-ROUTING-API-KEY', 'wrong'],
        ]),
        get('a.test', '/key', [
          ['X-ROUTING-API-KEY', 'wrong'],
          ['X-ROUTING-API-KEY', KEY],
        ]),
        get('a.test', '/key', [['X_ROUTING_API_KEY', KEY]]),
        get('a.test', '/keyx/y', [['X-ROUTING-API-KEY', KEY]]),
        get('a.test', '/nodejs', [['X-ROUTING-API-KEY', 'anything']]),
      ],
      [403, 403, 403, 403, 200, 200, 403, 403, 200, 200],
    );
  });
}

/** Retries, failures and timeouts towards the pods. */
function upstreamCases(mode: Mode, agree: Agree): void {
  test(`upstream: refused pods are skipped, all refused is 502, and failed pods stay out${mode.label}`, async () => {
    await agree(
      'dead',
      [get('b.test', '/dead'), get('b.test', '/dead'), get('b.test', '/single-dead'), get('b.test', '/single-dead')],
      [502, 502, 502, 502],
    );
    await agree(
      'mix',
      [get('b.test', '/mix'), get('b.test', '/mix'), get('b.test', '/mix'), get('b.test', '/mix', [], 'POST')],
      [200, 200, 200, 200],
    );
  });

  test(`upstream: a request tries every pod once, four refusing before the one that answers${mode.label}`, async () => {
    const many = (method = 'GET'): RawRequest => get('b.test', '/many-dead', [], method);
    await agree('many dead', [many(), many(), many('POST')], [200, 200, 200]);
  });

  test(`upstream: a pod whose POST failed, the last try of its request, is left out later${mode.label}`, async () => {
    const post = (): RawRequest => get('b.test', '/flaky', [], 'POST');
    await agree('failed last try', [post(), post(), post()], [502, 200, 200]);
  });

  test(`upstream: a refused connection moves on even for POST${mode.label}`, async () => {
    await agree('refused POST', [{ ...get('b.test', '/mix', [['Content-Length', '3']], 'POST'), body: 'abc' }], [200]);
  });

  for (const method of ['GET', 'PUT', 'DELETE', 'POST', 'PATCH', 'LOCK']) {
    test(`upstream: a pod that resets after the request, ${method}${mode.label}`, async () => {
      const expected = ['POST', 'PATCH', 'LOCK'].includes(method) ? 502 : 200;
      await agree(
        `reset ${method}`,
        [get('b.test', '/flaky', [], method), get('b.test', '/flaky', [], method)],
        [expected, 200],
      );
    });
  }

  test(`upstream: a pod that resets mid-answer cuts the client off and is not marked failed${mode.label}`, async () => {
    const cut = (): RawRequest => get('b.test', '/cut');
    await agree('reset mid-answer', [cut(), cut(), cut(), cut()], ['dropped', 200, 'dropped', 200]);
  });

  test(`upstream: a single pod that resets is not retried${mode.label}`, async () => {
    await agree('single reset', [get('b.test', '/single-flaky'), get('b.test', '/single-flaky')], [502, 502]);
  });

  test(
    'upstream: a timeout moves GET on, ends POST with 504, ' + `and a single pod times out with 504${mode.label}`,
    async () => {
      await agree(
        'timeouts',
        [get('b.test', '/hang'), get('b.test', '/single-hang'), get('b.test', '/hang')],
        [200, 504, 200],
      );
      await agree('timeout POST', [get('b.test', '/hang', [], 'POST')], [504]);
    },
  );
}

/** Headers, methods and bodies. */
function requestCases(mode: Mode, agree: Agree): void {
  test(
    'headers: Host, Connection and Upgrade as set by the config; ' +
      `hop-by-hop and invalid headers dropped${mode.label}`,
    async () => {
      await agree('headers', [
        get('A.test:81', '/nodejs'),
        get('a.test', '/nodejs', [['Connection', 'keep-alive']]),
        get('a.test', '/nodejs', [['Connection', '']]),
        get('a.test', '/nodejs', [['Upgrade', 'foo']]),
        get('a.test', '/nodejs', [['Upgrade', '']]),
        get('a.test', '/nodejs', [
          ['Keep-Alive', 'timeout=5'],
          ['TE', 'trailers'],
          ['Expect', 'something'],
          ['X_Under', '1'],
          ['X.Dot', '1'],
          ['Proxy-Connection', 'keep-alive'],
          ['X-Multi', 'a'],
          ['x-multi', 'b'],
          ['X-Forwarded-For', '1.2.3.4'],
          ['Cookie', 'a=1'],
          ['Cookie', 'b=2'],
        ]),
      ]);
    },
  );

  test(`methods and bodies: the pod gets the method and body as sent${mode.label}`, async () => {
    const chunked = Buffer.from(
      'POST /nodejs HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n',
      'latin1',
    );
    await agree('bodies', [
      { ...get('a.test', '/nodejs', [['Content-Length', '5']], 'POST'), body: 'hello' },
      { ...get('a.test', '/nodejs', [['Content-Length', '4']], 'PUT'), body: 'data' },
      { ...get('a.test', '/nodejs', [['Content-Length', '4']], 'GET'), body: 'body' },
      {
        ...get(
          'a.test',
          '/nodejs',
          [
            ['Content-Length', '2'],
            ['Expect', '100-continue'],
          ],
          'POST',
        ),
        body: 'hi',
      },
      get('a.test', '/nodejs', [], 'POST'),
      get('a.test', '/nodejs', [], 'HEAD'),
      get('a.test', '/nodejs', [], 'OPTIONS'),
      get('a.test', '/nodejs', [], 'DELETE'),
      chunked,
    ]);
  });

  test(`TRACE is 405, even for an unknown host${mode.label}`, async () => {
    await agree('trace', [get('a.test', '/nodejs', [], 'TRACE'), get('c.test', '/', [], 'TRACE')], [405, 405]);
  });

  test(
    'a body over 1 MiB is 413, before the location answers 404 or 301, ' +
      `but after the unknown-host drop${mode.label}`,
    async () => {
      const big: [string, string][] = [['Content-Length', String(1024 * 1024 + 1)]];
      await agree(
        '413',
        [
          get('a.test', '/nodejs', big, 'POST'),
          get('b.test', '/', big, 'POST'),
          get('a.test', '/api', big, 'POST'),
          get('c.test', '/', big, 'POST'),
        ],
        [413, 413, 413, 'dropped'],
      );
    },
  );
}
