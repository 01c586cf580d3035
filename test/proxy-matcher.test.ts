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
  backends: [{ pod: `${host}${path}`, namespace: 'ns', ip: '10.0.0.1', port: 80 }],
});

const matcher = new RouteMatcher({
  routes: [route('a.test', '/'), route('a.test', '/nodejs'), route('a.test', '/nodejs/api'), route('a.test', '/dir/'), route('b.test', '/only')],
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
    .uniqueArray(fc.tuple(fc.constantFrom(...hosts), fc.constantFrom(...paths)), { selector: ([h, p]) => `${h} ${p}`, maxLength: 12 })
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
        const reused = new RouteMatcher(table, previous);
        const scratch = new RouteMatcher(table);
        for (const host of [...hosts, 'd.test']) {
          for (const path of ['/', '/x', '/x/', '/x/y', '/x/yz', '/z', '/q']) assert.deepEqual(reused.match(host, path), scratch.match(host, path), `${host}${path}`);
        }
        previous = reused;
      }
    }),
  );
});
