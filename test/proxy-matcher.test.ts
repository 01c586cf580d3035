import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RouteMatcher } from '../proxy/matcher.js';
import type { Route } from '../src/core/route-table.js';

const route = (host: string, path: string): Route => ({
  host,
  path,
  namespace: 'ns',
  apiKey: null,
  affinity: null,
  backends: [{ pod: `${host}${path}`, namespace: 'ns', ip: '10.0.0.1', port: 80 }],
});

const matcher = new RouteMatcher({
  routes: [
    route('a.test', '/'),
    route('a.test', '/nodejs'),
    route('a.test', '/nodejs/api'),
    route('a.test', '/dir/'),
    route('b.test', '/only'),
  ],
  rejections: [],
});

const pathOf = (host: string, path: string): string => {
  const m = matcher.match(host, path);
  return m.kind === 'route' ? m.route.path : m.kind === 'redirect' ? `301 ${m.location}` : m.kind;
};

test('the longest matching prefix wins, also inside a segment', () => {
  assert.equal(pathOf('a.test', '/nodejs/api/x'), '/nodejs/api');
  assert.equal(pathOf('a.test', '/nodejs/apix'), '/nodejs/api');
  assert.equal(pathOf('a.test', '/nodejsfoo'), '/nodejs');
  assert.equal(pathOf('a.test', '/node'), '/');
});

test('matching is case-sensitive', () => {
  assert.equal(pathOf('a.test', '/NodeJS'), '/');
});

test('a route ending in "/" redirects its path without the slash', () => {
  assert.equal(pathOf('a.test', '/dir'), '301 /dir/');
  assert.equal(pathOf('a.test', '/dir/x'), '/dir/');
  assert.equal(pathOf('a.test', '/dirx'), '/');
});

test('unknown host and known host without a matching path', () => {
  assert.equal(pathOf('c.test', '/'), 'unknownHost');
  assert.equal(pathOf('b.test', '/'), 'notFound');
  assert.equal(pathOf('b.test', '/onlyx'), '/only');
});

test('a matcher built from the one before answers as one built from scratch, whatever changed', () => {
  const hosts = ['a.test', 'b.test', 'c.test'];
  const paths = ['/', '/x', '/x/', '/x/y', '/z'];
  const arbitraryTable = fc
    .uniqueArray(fc.tuple(fc.constantFrom(...hosts), fc.constantFrom(...paths)), {
      selector: ([h, p]) => `${h} ${p}`,
      maxLength: 12,
    })
    .chain((pairs) => fc.constantFrom(pairs, [...pairs].sort(), [...pairs].sort().reverse()))
    .map((pairs) => pairs.map(([h, p]) => route(h, p)));
  fc.assert(
    fc.property(fc.array(fc.tuple(arbitraryTable, fc.boolean()), { minLength: 1, maxLength: 6 }), (tables) => {
      let previous: RouteMatcher | undefined;
      let routes: Route[] = [];
      for (const [fresh, keep] of tables) {
        // Keep the route objects of the table before where host and path are the same, as the route table does.
        routes = fresh.map((r) => (keep ? (routes.find((o) => o.host === r.host && o.path === r.path) ?? r) : r));
        const table = { routes, rejections: [] };
        const reused = previous === undefined ? new RouteMatcher(table) : previous.next(table);
        const scratch = new RouteMatcher(table);
        for (const host of [...hosts, 'd.test']) {
          for (const path of ['/', '/x', '/x/', '/x/y', '/x/yz', '/z', '/q'])
            assert.deepEqual(reused.match(host, path), scratch.match(host, path), `${host}${path}`);
        }
        previous = reused;
      }
    }),
  );
});

test(
  'a matcher being prepared for a new table keeps matching the ' + 'old one until it switches, and is not used after',
  () => {
    const before = new RouteMatcher({ routes: [route('a.test', '/'), route('b.test', '/')], rejections: [] });
    const steps = before.preparing({ routes: [route('a.test', '/'), route('c.test', '/')], rejections: [] });
    let step = steps.next();
    while (!step.done) step = steps.next();
    assert.equal(before.match('b.test', '/').kind, 'route');
    assert.equal(before.match('c.test', '/').kind, 'unknownHost');
    const after = step.value();
    assert.equal(after.match('b.test', '/').kind, 'unknownHost');
    assert.equal(after.match('c.test', '/').kind, 'route');
    assert.throws(() => before.next({ routes: [], rejections: [] }), /updated in place/);
  },
);

test('a table with thousands of changed routes gives a new matcher that answers as one built from scratch', () => {
  const table = (n: number, path: string, changed: (i: number) => boolean, old?: Route[]): Route[] =>
    Array.from({ length: n }, (_, i) =>
      old !== undefined && !changed(i)
        ? (old[i] as Route)
        : route(`h${String(i).padStart(5, '0')}.test`, i % 3 === 0 ? '/' : path),
    );
  const first = table(5_000, '/x', () => true);
  const second = table(5_000, '/y', (i) => i % 2 === 0, first);
  const reused = new RouteMatcher({ routes: first, rejections: [] }).next({ routes: second, rejections: [] });
  const scratch = new RouteMatcher({ routes: second, rejections: [] });
  for (let i = 0; i < 5_000; i += 7) {
    for (const path of ['/', '/x', '/y', '/xy']) {
      const host = `h${String(i).padStart(5, '0')}.test`;
      assert.deepEqual(reused.match(host, path), scratch.match(host, path));
    }
  }
});

test('a host with many paths finds the same longest prefix as a plain search', () => {
  const paths = ['/', '/a', '/ab', '/a/', '/a/b', '/abc/d', '/b', '/b/c/', '/api', '/api/v1', '/api/v1/', '/x/y/z'];
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.constantFrom(...paths), { minLength: 1 }),
      fc.constantFrom('/', '/a', '/ab', '/a/b/c', '/abc/de', '/b/c', '/api/v1', '/api/v1/x', '/x/y/zz', '/q'),
      (chosen, path) => {
        const many = new RouteMatcher({ routes: chosen.map((p) => route('m.test', p)), rejections: [] });
        const got = many.match('m.test', path);
        const longest = chosen.filter((p) => path.startsWith(p)).sort((a, b) => b.length - a.length)[0];
        const redirect = !chosen.includes(path) && chosen.includes(`${path}/`);
        const expected = redirect ? `301 ${path}/` : (longest ?? 'notFound');
        assert.equal(
          got.kind === 'route' ? got.route.path : got.kind === 'redirect' ? `301 ${got.location}` : got.kind,
          expected,
        );
      },
    ),
    { numRuns: 1000 },
  );
});
