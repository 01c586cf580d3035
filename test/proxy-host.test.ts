import assert from 'node:assert/strict';
import { test } from 'node:test';
import { normalizeHost } from '../proxy/host.js';

test('host is lower-cased, loses its port and one trailing dot', () => {
  assert.equal(normalizeHost('Test.K8s.Local'), 'test.k8s.local');
  assert.equal(normalizeHost('test.k8s.local:8080'), 'test.k8s.local');
  assert.equal(normalizeHost('test.k8s.local.'), 'test.k8s.local');
  assert.equal(normalizeHost('test.k8s.local.:80'), 'test.k8s.local');
  assert.equal(normalizeHost('10.0.0.1:80'), '10.0.0.1');
  assert.equal(normalizeHost('[::1]:80'), '[::1]');
});

test('hosts nginx refuses with 400 are refused', () => {
  for (const bad of ['', '.', 'a..b', 'a:80..', 'a/b', 'a b', 'a\tb', 'a\x7fb', ':80', 'a\0b']) {
    assert.equal(normalizeHost(bad), null, JSON.stringify(bad));
  }
});

test('only one trailing dot is removed; a leading dot is kept', () => {
  assert.equal(normalizeHost('.a'), '.a');
  // nginx looks at the last dot anywhere, port included: a dot after the port keeps the host's.
  assert.equal(normalizeHost('a.:1.'), 'a.');
});
