import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Balancers, PeerGroup } from '../proxy/balancer.js';
import type { PodEndpoint, Route } from '../src/core/route-table.js';

const backends = (n: number): PodEndpoint[] =>
  Array.from({ length: n }, (_, i) => ({ pod: `p${i}`, namespace: 'ns', ip: `10.0.0.${i + 1}`, port: 80 }));

function clock(): { now: () => number; advance(ms: number): void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

/** The pod each of `n` requests starts with, all succeeding. */
function firstPicks(group: PeerGroup, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const s = group.begin();
    const peer = s.next();
    assert.ok(peer);
    s.succeeded(peer.index);
    out.push(peer.backend.pod);
  }
  return out;
}

test('round robin visits pods in order', () => {
  const group = new PeerGroup(backends(3), { failTimeoutMs: 10_000 });
  assert.deepEqual(firstPicks(group, 7), ['p0', 'p1', 'p2', 'p0', 'p1', 'p2', 'p0']);
});

test('a failed pod is skipped for fail_timeout, then tried again', () => {
  const c = clock();
  const group = new PeerGroup(backends(3), { failTimeoutMs: 10_000, now: c.now });
  const s = group.begin();
  const first = s.next();
  assert.equal(first?.backend.pod, 'p0');
  assert.equal(s.failed(first.index, 'GET', false), 'next');
  assert.equal(s.next()?.backend.pod, 'p1');
  assert.deepEqual(firstPicks(group, 4), ['p2', 'p1', 'p2', 'p1']);
  c.advance(10_001);
  assert.ok(firstPicks(group, 6).includes('p0'));
});

test('each pod is tried once per request, then no pod is left', () => {
  const group = new PeerGroup(backends(2), { failTimeoutMs: 10_000 });
  const s = group.begin();
  const a = s.next();
  assert.ok(a);
  assert.equal(s.failed(a.index, 'GET', true), 'next');
  const b = s.next();
  assert.ok(b);
  assert.notEqual(a.index, b.index);
  assert.equal(s.failed(b.index, 'GET', true), 'stop');
  // Both marked failed: nginx 1.22 has "no live upstreams" and does not try them anyway.
  assert.equal(group.begin().next(), null);
});

test('POST, PATCH and LOCK are not retried once sent, but are when the connection failed', () => {
  for (const method of ['POST', 'PATCH', 'LOCK']) {
    const group = new PeerGroup(backends(2), { failTimeoutMs: 10_000 });
    const s = group.begin();
    const a = s.next();
    assert.ok(a);
    assert.equal(s.failed(a.index, method, true), 'stop', method);
    const t = new PeerGroup(backends(2), { failTimeoutMs: 10_000 }).begin();
    const b = t.next();
    assert.ok(b);
    assert.equal(t.failed(b.index, method, false), 'next', method);
  }
  const put = new PeerGroup(backends(2), { failTimeoutMs: 10_000 }).begin();
  const p = put.next();
  assert.ok(p);
  assert.equal(put.failed(p.index, 'PUT', true), 'next');
});

test('a single pod is never marked failed and gets one try', () => {
  const group = new PeerGroup(backends(1), { failTimeoutMs: 10_000 });
  const s = group.begin();
  const a = s.next();
  assert.ok(a);
  assert.equal(s.failed(a.index, 'GET', false), 'stop');
  assert.equal(group.begin().next()?.backend.pod, 'p0');
});

test('positions survive a table swap for routes whose pods did not change', () => {
  const route = (path: string, n: number): Route => ({
    host: 'h',
    path,
    namespace: 'ns',
    apiKey: null,
    affinity: null,
    backends: backends(n),
  });
  const options = { failTimeoutMs: 10_000 };
  const [a1, b1] = [route('/a', 3), route('/b', 3)];
  const first = Balancers.empty().next([a1, b1], options);
  assert.deepEqual(firstPicks(first.groupFor(a1), 1), ['p0']);
  assert.deepEqual(firstPicks(first.groupFor(b1), 1), ['p0']);
  // The next table has new Route objects (the same pods for /a).
  const [a2, b2] = [route('/a', 3), route('/b', 2)];
  const second = first.next([a2, b2], options);
  assert.deepEqual(firstPicks(second.groupFor(a2), 1), ['p1']);
  assert.deepEqual(firstPicks(second.groupFor(b2), 1), ['p0']);
});

test(
  'a route that is the very object of the table before keeps its group, and one whose pods changed starts ' + 'afresh',
  () => {
    const route = (path: string, n: number): Route => ({
      host: 'h',
      path,
      namespace: 'ns',
      apiKey: null,
      affinity: null,
      backends: backends(n),
    });
    const options = { failTimeoutMs: 10_000 };
    const kept = route('/kept', 3);
    const changedBefore = route('/changed', 3);
    const first = Balancers.empty().next([kept, changedBefore], options);
    firstPicks(first.groupFor(kept), 2);
    firstPicks(first.groupFor(changedBefore), 2);
    const keptGroup = first.groupFor(kept);
    // Groups are looked up by the table's own Route objects, as the proxy does.
    const changedAfter = route('/changed', 4);
    const second = first.next([kept, changedAfter], options);
    assert.equal(second.groupFor(kept), keptGroup);
    assert.deepEqual(firstPicks(second.groupFor(kept), 1), ['p2']);
    assert.deepEqual(firstPicks(second.groupFor(changedAfter), 1), ['p0']);
    // Prepared in steps (as the proxy does), nothing changes until the switch.
    const steps = second.preparing([kept], options);
    let step = steps.next();
    while (!step.done) step = steps.next();
    assert.deepEqual(second.groupFor(changedAfter).backends, backends(4));
    const third = step.value();
    assert.equal(third.groupFor(kept), keptGroup);
    assert.throws(() => third.groupFor(changedAfter), /no balancer/);
  },
);

test('a table differing in a few routes updates the groups in place with the same result as building them anew', () => {
  const options = { failTimeoutMs: 10_000 };
  const paths = ['/a', '/b', '/c', '/d', '/e', '/f'];
  const make = (path: string, pods: number): Route => ({
    host: 'h',
    path,
    namespace: 'ns',
    apiKey: null,
    affinity: null,
    backends: backends(pods),
  });
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.subarray(paths),
          fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 6, maxLength: 6 }),
          fc.boolean(),
          fc.boolean(),
        ),
        { minLength: 1, maxLength: 8 },
      ),
      (steps) => {
        let balancers = Balancers.empty();
        let before: Route[] = [];
        let groups = new Map<string, PeerGroup>();
        for (const [chosen, sizes, keepObjects, reverse] of steps) {
          // Route objects of the table before are kept where nothing changed, when asked to.
          let routes = chosen.map((path, i) => {
            const old = before.find((r) => r.path === path);
            const fresh = make(path, sizes[i] as number);
            return keepObjects && old !== undefined && old.backends.length === fresh.backends.length ? old : fresh;
          });
          if (reverse) routes = [...routes].reverse();
          balancers = balancers.next(routes, options);
          const next = new Map<string, PeerGroup>();
          for (const route of routes) {
            const group = balancers.groupFor(route);
            assert.deepEqual(group.backends, route.backends);
            // The same pods as before on the same path: the same group, its state kept.
            const old = before.find((r) => r.path === route.path);
            if (old !== undefined && old.backends.length === route.backends.length)
              assert.equal(group, groups.get(route.path));
            else assert.notEqual(group, groups.get(route.path));
            next.set(route.path, group);
          }
          for (const path of paths.filter((p) => !chosen.includes(p)))
            assert.throws(() => balancers.groupFor(make(path, 1)), /no balancer/);
          before = routes;
          groups = next;
        }
      },
    ),
  );
});

test('balancers updated in place refuse to be built from again', () => {
  const route: Route = { host: 'h', path: '/', namespace: 'ns', apiKey: null, affinity: null, backends: backends(2) };
  const first = Balancers.empty().next([route], { failTimeoutMs: 10_000 });
  first.next([route], { failTimeoutMs: 10_000 });
  assert.throws(() => first.next([route], { failTimeoutMs: 10_000 }), /updated in place/);
});

test('a route whose affinity changes gets a new group, one whose affinity and pods stay keeps its own', () => {
  const options = { failTimeoutMs: 10_000 };
  const route = (affinity: 'ip' | null): Route => ({
    host: 'h',
    path: '/',
    namespace: 'ns',
    apiKey: null,
    affinity,
    backends: backends(3),
  });
  const sticky = route('ip');
  const one = Balancers.empty().next([sticky], options);
  const stickyGroup = one.groupFor(sticky);
  assert.equal(stickyGroup.affinity, 'ip');
  const again = route('ip');
  const two = one.next([again], options);
  assert.equal(two.groupFor(again), stickyGroup, 'same pods, same affinity: the same group');
  const plain = route(null);
  const three = two.next([plain], options);
  assert.notEqual(three.groupFor(plain), stickyGroup);
  assert.equal(three.groupFor(plain).affinity, null);
});

test('with affinity, a client address gets the same pod on every request, and another pod once its own failed', () => {
  const route: Route = { host: 'h', path: '/', namespace: 'ns', apiKey: null, affinity: 'ip', backends: backends(3) };
  let now = 1_000_000;
  const group = Balancers.empty()
    .next([route], { failTimeoutMs: 10_000, now: () => now })
    .groupFor(route);
  const picks = Array.from({ length: 5 }, () => group.begin('203.0.113.7').next()?.backend.pod);
  assert.equal(new Set(picks).size, 1, `always one pod: ${picks.join(' ')}`);
  const own = picks[0];
  const selection = group.begin('203.0.113.7');
  const first = selection.next();
  assert.equal(first?.backend.pod, own);
  assert.equal(selection.failed(first!.index, 'GET', false), 'next');
  const second = selection.next();
  assert.notEqual(second?.backend.pod, own, 'the retry goes to another pod');
  // For fail_timeout the client goes where the retry went, then back to its own pod.
  assert.equal(group.begin('203.0.113.7').next()?.backend.pod, second?.backend.pod);
  now += 10_001;
  assert.equal(group.begin('203.0.113.7').next()?.backend.pod, own);
});
