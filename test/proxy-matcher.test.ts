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

test('a host with many paths finds the same longest prefix as a plain search', () => {
  const paths = ['/', '/a', '/ab', '/a/', '/a/b', '/abc/d', '/b', '/b/c/', '/api', '/api/v1', '/api/v1/', '/x/y/z'];
  fc.assert(
    fc.property(fc.uniqueArray(fc.constantFrom(...paths), { minLength: 1 }), fc.constantFrom('/', '/a', '/ab', '/a/b/c', '/abc/de', '/b/c', '/api/v1', '/api/v1/x', '/x/y/zz', '/q'), (chosen, path) => {
      const many = new RouteMatcher({ routes: chosen.map((p) => route('m.test', p)), rejections: [] });
      const got = many.match('m.test', path);
      const longest = chosen.filter((p) => path.startsWith(p)).sort((a, b) => b.length - a.length)[0];
      const redirect = !chosen.includes(path) && chosen.includes(`${path}/`);
      const expected = redirect ? `301 ${path}/` : longest ?? 'notFound';
      assert.equal(got.kind === 'route' ? got.route.path : got.kind === 'redirect' ? `301 ${got.location}` : got.kind, expected);
    }),
    { numRuns: 1000 },
  );
});
