import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { normalizePath, resolvePath, splitTarget } from '../proxy/uri.js';

test('query and fragment are not part of the path', () => {
  assert.equal(normalizePath('/a/b?x=/../..'), '/a/b');
  assert.equal(normalizePath('/a#b/../..'), '/a');
});

test('percent escapes are decoded, and decoded "/" and "." act as path syntax', () => {
  assert.equal(normalizePath('/a%20b'), '/a b');
  assert.equal(normalizePath('/a%2Fb'), '/a/b');
  assert.equal(normalizePath('/a/%2e%2E/b'), '/b');
  assert.equal(normalizePath('/%2F%2F'), '/');
});

test('decoded "%", "?" and "#" stay plain characters', () => {
  assert.equal(normalizePath('/a%3Fb'), '/a?b');
  assert.equal(normalizePath('/a%23b'), '/a#b');
  assert.equal(normalizePath('/a%252e'), '/a%2e');
});

test('dot segments are resolved and slashes merged', () => {
  assert.equal(normalizePath('//a///b'), '/a/b');
  assert.equal(normalizePath('/a/./b'), '/a/b');
  assert.equal(normalizePath('/a/.'), '/a/');
  assert.equal(normalizePath('/a/b/..'), '/a/');
  assert.equal(normalizePath('/a/b/../c'), '/a/c');
  assert.equal(normalizePath('/a/..'), '/');
  assert.equal(normalizePath('/a/...'), '/a/...');
  assert.equal(normalizePath('/a/..b'), '/a/..b');
  assert.equal(normalizePath('/a.b/c'), '/a.b/c');
});

test('climbing above the root, bad escapes and NUL are 400 (null)', () => {
  for (const bad of ['/..', '/../a', '/a/../..', '/%2e%2e', '/a%', '/a%2', '/a%zz', '/a%00', 'a', '']) {
    assert.equal(normalizePath(bad), null, bad);
  }
});

test('normalized paths start with "/" and hold no "//", "/./" or "/../"', () => {
  const segment = fc.constantFrom('a', 'b', '.', '..', '', '%2e', '%2F', 'c%41');
  fc.assert(
    fc.property(fc.array(segment, { maxLength: 8 }), (segments) => {
      const path = normalizePath(`/${segments.join('/')}`);
      if (path === null) return;
      assert.ok(path.startsWith('/'));
      assert.ok(!path.includes('//'));
      assert.ok(!/\/\.\.?(\/|$)/.test(path), path);
    }),
  );
});

test('absolute-form targets give their host and send only the path on', () => {
  assert.deepEqual(splitTarget('http://A.test:80/x?y'), { host: 'A.test:80', uri: '/x?y' });
  assert.deepEqual(splitTarget('http://a.test'), { host: 'a.test', uri: '/' });
  assert.deepEqual(splitTarget('/x'), { host: null, uri: '/x' });
  assert.equal(splitTarget('*'), null);
  assert.equal(splitTarget('x/y'), null);
});

test('the shortcut for paths already normal gives what the full rules give', () => {
  const piece = fc.constantFrom('a', 'b', '/', '.', '..', '%2e', '%2F', '%41', '?', '#', '?x=/../', '%', '%0');
  fc.assert(
    fc.property(fc.boolean(), fc.array(piece, { maxLength: 10 }), (rooted, pieces) => {
      const target = `${rooted ? '/' : ''}${pieces.join('')}`;
      assert.equal(normalizePath(target), resolvePath(target), target);
    }),
    { numRuns: 2000 },
  );
});
