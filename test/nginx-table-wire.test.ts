import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { Route, RouteTable } from '../src/core/route-table.js';
import { ControlError, putTable } from '../nginx/control-client.js';
import { MAX_TABLE_BYTES, serializeTable, TableWireError, WIRE_HEADER } from '../nginx/table-wire.js';
import { startDynamicNginx, type DynamicNginx } from './support/dynamic-nginx.js';

// The table as dynamic nginx reads it: what serializeTable writes for good tables, what it
// refuses (with a reason) for values Lua could misread or nginx could not use, and that
// the Lua parser takes every text serializeTable writes and refuses texts it did not.

const route = (over: Partial<Route> = {}): Route => ({
  host: 'a.test',
  path: '/',
  namespace: 'default',
  apiKey: null,
  affinity: null,
  backends: [{ pod: 'web-0', namespace: 'default', ip: '10.1.0.5', port: 8080 }],
  ...over,
});
const tableOf = (routes: Route[]): RouteTable => ({ routes, rejections: [] });

let nginx: DynamicNginx;
before(async () => {
  nginx = await startDynamicNginx(tableOf([]));
});
after(() => nginx?.close());

/** What Lua says to `text`: "stored" or its reason. */
async function luaVerdict(text: string): Promise<string> {
  try {
    await putTable(nginx.controlSocket, text, 5_000);
    return 'stored';
  } catch (err) {
    if (err instanceof ControlError && err.status === 400) return `400 ${err.message}`;
    throw err;
  }
}

const refusals: [string, Route[], string, RegExp][] = [
  ['an upper-case host', [route({ host: 'A.test' })], 'BAD_HOST', /host "A\.test"/],
  ['a host with a tab', [route({ host: 'a\tb.test' })], 'BAD_HOST', /is not a DNS hostname/],
  ['a path with a space', [route({ path: '/a b' })], 'BAD_PATH', /contains U\+0020/],
  ['a path with a newline', [route({ path: '/a\nb' })], 'BAD_PATH', /U\+000A/],
  ['a path without its slash', [route({ path: 'a' })], 'BAD_PATH', /does not start with/],
  ['a key that is not base64', [route({ apiKey: 'sec ret' })], 'BAD_API_KEY', /not base64/],
  ['an empty key', [route({ apiKey: '' })], 'BAD_API_KEY', /not base64/],
  [
    'a pod IP with a comma',
    [route({ backends: [{ pod: 'p', namespace: 'n', ip: '10.0.0.1,80', port: 80 }] })],
    'BAD_BACKEND',
    /not an IP address/,
  ],
  [
    'a scoped IPv6 address',
    [route({ backends: [{ pod: 'p', namespace: 'n', ip: 'fe80::1%eth0', port: 80 }] })],
    'BAD_BACKEND',
    /IP/,
  ],
  ['port 0', [route({ backends: [{ pod: 'p', namespace: 'n', ip: '10.0.0.1', port: 0 }] })], 'BAD_BACKEND', /port 0/],
  [
    'a pod name with a space',
    [route({ backends: [{ pod: 'p q', namespace: 'n', ip: '10.0.0.1', port: 80 }] })],
    'BAD_BACKEND',
    /name/,
  ],
  [
    'a namespace with a dot',
    [route({ backends: [{ pod: 'p', namespace: 'n.x', ip: '10.0.0.1', port: 80 }] })],
    'BAD_BACKEND',
    /namespace/,
  ],
  ['a route without pods', [route({ backends: [] })], 'NO_BACKENDS', /no pods/],
  ['a route twice', [route(), route()], 'DUPLICATE_ROUTE', /twice/],
  ['an unknown affinity', [{ ...route(), affinity: 'cookie' } as unknown as Route], 'BAD_AFFINITY', /cookie/],
];

describe('serializeTable', () => {
  it('writes a header, one tab-separated line per route and an end line', () => {
    const text = serializeTable(
      tableOf([
        route({
          path: '/',
          backends: [
            { pod: 'web-0', namespace: 'shop', ip: '10.1.0.5', port: 80 },
            { pod: 'web-1', namespace: 'shop', ip: 'fd00::7', port: 8080 },
          ],
        }),
        route({ path: '/api/', apiKey: 'c2VjcmV0' }),
      ]),
      'v7',
    );
    assert.equal(
      text,
      [
        `${WIRE_HEADER} v7 2`,
        'a.test\t/\t-\trr\t10.1.0.5,80,shop,web-0 fd00::7,8080,shop,web-1',
        'a.test\t/api/\tc2VjcmV0\trr\t10.1.0.5,8080,default,web-0',
        'end v7',
        '',
      ].join('\n'),
    );
  });

  it('writes the affinity of a route: ip for a client address kept on one pod', () => {
    const sticky = { ...route(), affinity: 'ip' } as Route;
    assert.match(serializeTable(tableOf([sticky]), 'v1'), /\tip\t10\.1\.0\.5,8080,default,web-0\n/);
  });
  for (const [what, routes, code, message] of refusals) {
    it(`refuses ${what} (${code})`, () => {
      assert.throws(
        () => serializeTable(tableOf(routes), 'v1'),
        (err: unknown) => err instanceof TableWireError && err.code === code && message.test(err.message),
      );
    });
  }
});

describe('serializeTable: refusals and limits', () => {
  it('refuses a version that is not a plain word', () => {
    for (const version of ['', 'a b', 'v1\n', 'x'.repeat(65)]) {
      assert.throws(
        () => serializeTable(tableOf([]), version),
        (err: unknown) => err instanceof TableWireError && err.code === 'BAD_VERSION',
        JSON.stringify(version),
      );
    }
  });

  it('never writes a key into its messages', () => {
    const secret = 'c2VjcmV0 with a space';
    assert.throws(
      () => serializeTable(tableOf([route({ apiKey: secret })]), 'v1'),
      (err: unknown) => err instanceof TableWireError && !err.message.includes('c2VjcmV0'),
    );
  });

  it(`refuses a table over ${MAX_TABLE_BYTES} bytes, the most the shared dict holds twice`, () => {
    const backends = Array.from({ length: 200 }, (_, i) => ({
      pod: `pod-${i}`,
      namespace: 'default',
      ip: `10.0.${i >> 8}.${i & 255}`,
      port: 8080,
    }));
    const routes = Array.from({ length: 5000 }, (_, i) => route({ host: `host-${i}.test`, backends }));
    assert.throws(
      () => serializeTable(tableOf(routes), 'v1'),
      (err: unknown) => err instanceof TableWireError && err.code === 'TOO_LARGE',
    );
  });
});

const bad: [string, string][] = [
  ['no header', 'a.test\t/\t-\trr\t10.0.0.1,80,default,p\nend v1\n'],
  ['another format', 'k8s-router-table 2 v1 0\nend v1\n'],
  ['no end line', `${WIRE_HEADER} v1 1\na.test\t/\t-\trr\t10.0.0.1,80,default,p\n`],
  ['an end line of another version', `${WIRE_HEADER} v1 0\nend v2\n`],
  ['text after the end line', `${WIRE_HEADER} v1 0\nend v1\nmore\n`],
  ['fewer routes than announced', `${WIRE_HEADER} v1 2\na.test\t/\t-\trr\t10.0.0.1,80,default,p\nend v1\n`],
  ['four fields', `${WIRE_HEADER} v1 1\na.test\t/\t-\t10.0.0.1,80,default,p\nend v1\n`],
  ['an upper-case host', `${WIRE_HEADER} v1 1\nA.test\t/\t-\trr\t10.0.0.1,80,default,p\nend v1\n`],
  ['a path with a quote', `${WIRE_HEADER} v1 1\na.test\t/"\t-\trr\t10.0.0.1,80,default,p\nend v1\n`],
  ['an unknown affinity', `${WIRE_HEADER} v1 1\na.test\t/\t-\tcookie\t10.0.0.1,80,default,p\nend v1\n`],
  ['a port past 65535', `${WIRE_HEADER} v1 1\na.test\t/\t-\trr\t10.0.0.1,65536,default,p\nend v1\n`],
  ['a host name as pod IP', `${WIRE_HEADER} v1 1\na.test\t/\t-\trr\tpod.local,80,default,p\nend v1\n`],
  ['no pods', `${WIRE_HEADER} v1 1\na.test\t/\t-\trr\t\nend v1\n`],
  [
    'two spaces between pods',
    `${WIRE_HEADER} v1 1\na.test\t/\t-\trr\t10.0.0.1,80,default,p  10.0.0.2,80,default,q\nend v1\n`,
  ],
  [
    'a route twice',
    `${WIRE_HEADER} v1 2\na.test\t/\t-\trr\t10.0.0.1,80,default,p\na.test\t/\t-\trr\t10.0.0.1,80,default,p\nend v1\n`,
  ],
  ['CRLF line ends', `${WIRE_HEADER} v1 1\r\na.test\t/\t-\trr\t10.0.0.1,80,default,p\r\nend v1\r\n`],
  ['nothing', ''],
];

// Hostile strings where the table has text: what serializeTable lets through, Lua must
// take as the same fields; what it refuses, it refuses with its typed error.
const hostile = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.constantFrom(
    '',
    '\t',
    '\n',
    ' ',
    ',',
    '-',
    'end v1',
    'a.test',
    '/',
    '/a/',
    'ä',
    '\r\n',
    '$host',
    '";',
    '%00',
    '::1',
    '10.0.0.1',
  ),
);
const hostileRoute: fc.Arbitrary<Route> = fc.record({
  host: fc.oneof(fc.constantFrom('a.test', 'b.test', '10.1.2.3'), hostile),
  path: fc.oneof(fc.constantFrom('/', '/api/', '/a-b'), hostile),
  namespace: fc.constant('default'),
  apiKey: fc.oneof(fc.constant(null), fc.constantFrom('a2V5', 'c2VjcmV0'), hostile),
  affinity: fc.constantFrom(null, 'ip' as const),
  backends: fc.array(
    fc.record({
      pod: fc.oneof(fc.constantFrom('web-0', 'web.1'), hostile),
      namespace: fc.oneof(fc.constant('default'), hostile),
      ip: fc.oneof(fc.constantFrom('10.0.0.1', 'fd00::1', '::ffff:10.0.0.1'), hostile),
      port: fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.integer()),
    }),
    { maxLength: 3 },
  ),
});

describe('the Lua parser (dynamic nginx)', () => {
  it('stores what serializeTable writes, IPv6 pods, keys and both affinities included', async () => {
    const text = serializeTable(
      tableOf([
        route({ backends: [{ pod: 'web-0', namespace: 'shop', ip: 'fd00::7', port: 80 }] }),
        route({ path: '/a/b-c_d~e!f&g(h)i*j+k,l=m:n@o/', apiKey: 'a2V5' }),
        { ...route({ host: '10.0.0.1' }), affinity: 'ip' },
      ]),
      'v-1.a_b',
    );
    assert.equal(await luaVerdict(text), 'stored');
  });
  for (const [what, text] of bad) {
    it(`refuses a text with ${what} (400 and the reason), and keeps serving the table it had`, async () => {
      await nginx.apply(tableOf([route()]));
      const before = nginx.version;
      const verdict = await luaVerdict(text);
      assert.match(verdict, /^400 nginx refused the table \(400\): \S/, verdict);
      const versions = await nginx.versions();
      assert.equal(versions.stored, before);
      assert.deepEqual(
        versions.reports.map((r) => r.version),
        [before],
      );
    });
  }

  it('takes every text serializeTable writes from hostile strings, field for field (or it throws)', async () => {
    let written = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(hostileRoute, { maxLength: 4 }), async (routes) => {
        let text: string;
        try {
          text = serializeTable(tableOf(routes), 'p1');
        } catch (err) {
          assert.ok(err instanceof TableWireError, `only TableWireError is thrown, got ${String(err)}`);
          refused++;
          return;
        }
        written++;
        const lines = text.split('\n');
        assert.deepEqual([lines[0], lines.at(-2), lines.at(-1)], [`${WIRE_HEADER} p1 ${routes.length}`, 'end p1', '']);
        routes.forEach((r, i) => {
          const fields = (lines[i + 1] as string).split('\t');
          assert.deepEqual(fields.slice(0, 3), [r.host, r.path, r.apiKey ?? '-']);
          assert.deepEqual(
            (fields[4] as string).split(' '),
            r.backends.map((b) => `${b.ip},${b.port},${b.namespace},${b.pod}`),
          );
        });
        assert.equal(await luaVerdict(text), 'stored');
      }),
      { numRuns: 300 },
    );
    assert.ok(written > 20 && refused > 20, `both outcomes were tried: ${written} written, ${refused} refused`);
  });
});
