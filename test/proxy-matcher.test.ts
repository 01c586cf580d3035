import assert from 'node:assert/strict';
import { test } from 'node:test';
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
