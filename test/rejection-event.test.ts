import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { defaultConfig } from '../src/core/config.js';
import type { Pod, Secret } from '../src/core/kube-objects.js';
import { buildRouteTable, type Rejection } from '../src/core/route-table.js';
import {
  eventName,
  eventNote,
  microTime,
  rejectionEvent,
  reportableRejections,
} from '../src/events/rejection-event.js';
import { eventProblems } from './support/fake-api-store.js';
import { apiKeySecret, pod } from './support/objects.js';

// The Event a tenant gets for a rejection, as plain JSON, checked against the API server's
// own validation (as the fake API server implements it).

const config = defaultConfig();
const rejection = (overrides: Partial<Rejection> = {}): Rejection => ({
  namespace: 'shop',
  pod: 'web-0',
  field: 'metadata.annotations.routingPaths',
  value: '9:/nope',
  code: 'PORT_NOT_DECLARED',
  reason: 'port 9 is not a containerPort of the pod',
  ...overrides,
});

describe('the RouteRejected Event', () => {
  it('regards the pod, says Warning RouteRejected, and carries code, value and reason in its note', () => {
    const report = { name: eventName('web-0', 'uid-1', rejection()), uid: 'uid-1', rejection: rejection() };
    const event = rejectionEvent(report, 'k8s-router-x7k2p', Date.UTC(2025, 0, 14, 9, 21, 37, 123));
    assert.deepEqual(event, {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: report.name, namespace: 'shop' },
      eventTime: '2025-01-14T09:21:37.123000Z',
      reportingController: 'k8s-router',
      reportingInstance: 'k8s-router-x7k2p',
      action: 'Route',
      reason: 'RouteRejected',
      type: 'Warning',
      regarding: { apiVersion: 'v1', kind: 'Pod', namespace: 'shop', name: 'web-0', uid: 'uid-1' },
      note: 'PORT_NOT_DECLARED: 9:/nope: port 9 is not a containerPort of the pod',
    });
    assert.deepEqual(eventProblems('shop', event as unknown as Record<string, unknown>), []);
  });

  it('leaves out an empty value from the note', () => {
    assert.equal(
      eventNote(rejection({ code: 'MISSING_ANNOTATION', value: '', reason: 'annotation routingHosts is missing' })),
      'MISSING_ANNOTATION: annotation routingHosts is missing',
    );
  });

  it('writes times as MicroTime, with six fractional digits', () => {
    assert.equal(microTime(Date.UTC(2024, 1, 29, 23, 59, 59, 7)), '2024-02-29T23:59:59.007000Z');
  });

  it('names the Event after the pod and a digest of (uid, code, field, value): the same for every router', () => {
    const name = eventName('web-0', 'uid-1', rejection());
    assert.match(name, /^web-0\.[0-9a-f]{16}$/);
    assert.equal(
      eventName('web-0', 'uid-1', rejection({ reason: 'another wording' })),
      name,
      'the reason is not part of the identity',
    );
    const others = [
      eventName('web-0', 'uid-2', rejection()),
      eventName('web-0', 'uid-1', rejection({ code: 'BAD_PORT' })),
      eventName('web-0', 'uid-1', rejection({ field: 'metadata.annotations.publicPaths' })),
      eventName('web-0', 'uid-1', rejection({ value: '9:/other' })),
    ];
    assert.equal(new Set([name, ...others]).size, 5);
  });

  it('gives valid names, notes and instances whatever the pod name, value and reason', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 300 }),
        fc.string({ maxLength: 3000, unit: 'grapheme' }),
        fc.string({ maxLength: 200 }),
        (name, value, instance) => {
          const r = rejection({ pod: name, value, reason: `host ${JSON.stringify(value)} is not a DNS hostname` });
          const event = rejectionEvent(
            { name: eventName(name, 'uid', r), uid: 'uid', rejection: r },
            instance === '' ? 'x' : instance,
            0,
          );
          assert.deepEqual(eventProblems('shop', event as unknown as Record<string, unknown>), []);
        },
      ),
      { numRuns: 300 },
    );
  });
});

const reportedCodes = (pods: Pod[], secrets: Secret[] = [], cfg = config): string[] =>
  reportableRejections(buildRouteTable(cfg, pods, secrets), pods).map((r) => `${r.rejection.pod} ${r.rejection.code}`);

describe('which rejections get an Event', () => {
  it('every rejection of a pod from the API server, none of a routed pod', () => {
    const pods = [
      pod('routed', { hosts: 'h.test', paths: '80:/', uid: 'u1' }),
      pod('typo', { hosts: 'h.test', paths: '80:/a 8080:/b', uid: 'u2' }),
      pod('unready', { hosts: 'h.test', paths: '80:/', ready: false, uid: 'u3' }),
    ];
    assert.deepEqual(reportedCodes(pods), ['typo PORT_NOT_DECLARED', 'unready NOT_READY']);
  });

  it(
    "an affinity value not understood, and each pod whose affinity lost to the oldest pod's, " +
      'while they stay routed',
    () => {
      const pods = [
        pod('old', { ip: '10.0.0.1', hosts: 'h.test', paths: '80:/', created: '2024-01-01T00:00:00Z', uid: 'u1' }),
        pod('sticky', {
          ip: '10.0.0.2',
          hosts: 'h.test',
          paths: '80:/',
          created: '2024-02-01T00:00:00Z',
          uid: 'u2',
          annotations: { routingAffinity: 'ip' },
        }),
        pod('typo', {
          ip: '10.0.0.3',
          hosts: 'h.test',
          paths: '80:/',
          created: '2024-03-01T00:00:00Z',
          uid: 'u3',
          annotations: { routingAffinity: 'IP' },
        }),
      ];
      assert.deepEqual(reportedCodes(pods), ['sticky AFFINITY_CONFLICT', 'typo BAD_AFFINITY']);
      const table = buildRouteTable(config, pods, []);
      assert.deepEqual(
        table.routes[0]?.backends.map((b) => b.pod),
        ['old', 'sticky', 'typo'],
      );
      const conflict = reportableRejections(table, pods).find((r) => r.rejection.code === 'AFFINITY_CONFLICT');
      assert.equal(
        eventNote((conflict as { rejection: Rejection }).rejection),
        'AFFINITY_CONFLICT: h.test/: host h.test path / has no affinity (round robin), as its oldest pod old ' +
          "asks; this pod asks for affinity ip and is routed with the route's",
      );
    },
  );

  it('none for a pod without a uid (a manifest object), a terminating pod or one the selector leaves out', () => {
    const pods = [
      pod('from-manifest', { hosts: 'bad_host', paths: '80:/' }),
      pod('leaving', { hosts: 'h.test', paths: '80:/', deleting: true, uid: 'u1' }),
      pod('unselected', { hosts: 'h.test', paths: '80:/', labels: { app: 'x' }, uid: 'u2' }),
    ];
    assert.deepEqual(reportedCodes(pods), []);
  });
});

describe('which rejections get an Event: missing annotations, names and API keys', () => {
  it(
    'a missing annotation when the pod has the other one, ' + 'not when it has neither (it addresses another router)',
    () => {
      const publicRouter = defaultConfig({ hostsAnnotation: 'publicHosts', pathsAnnotation: 'publicPaths' });
      const pods = [
        pod('private-only', { annotations: { privateHosts: 'h.test', privatePaths: '80:/' }, uid: 'u1' }),
        pod('half', { annotations: { publicHosts: 'h.test' }, uid: 'u2' }),
      ];
      assert.deepEqual(reportedCodes(pods, [], publicRouter), ['half MISSING_ANNOTATION']);
    },
  );

  it('reuses the names it is given for known rejections instead of computing them again', () => {
    const pods = [pod('typo', { hosts: 'h.test', paths: '80:/ 9:/nope', uid: 'u1' })];
    const table = buildRouteTable(config, pods, []);
    const [first] = reportableRejections(table, pods);
    assert.ok(first);
    assert.equal(first.name, eventName('typo', 'u1', first.rejection));
    const [again] = reportableRejections(table, pods, new Map([[first.identity, 'remembered.0123456789abcdef']]));
    assert.equal(again?.name, 'remembered.0123456789abcdef');
  });

  it('a BAD_API_KEY Event says the Secret is broken without its value, and no Event holds a working key', () => {
    const broken: Secret = {
      kind: 'Secret',
      metadata: { name: 'routing', namespace: 'locked' },
      data: { 'api-key': 'c2VjcmV0!not-base64' },
    };
    const pods = [
      pod('web', { namespace: 'locked', hosts: 'h.test', paths: '80:/', uid: 'u1' }),
      pod('api', { namespace: 'keyed', hosts: 'k.test', paths: '80:/ 8080:/x', uid: 'u2' }),
    ];
    const table = buildRouteTable(config, pods, [broken, apiKeySecret('keyed', 'supersecret')]);
    const events = reportableRejections(table, pods).map((r) => rejectionEvent(r, 'router', 0));
    assert.deepEqual(
      events.map((e) => e.note),
      [
        'PORT_NOT_DECLARED: 8080:/x: port 8080 is not a containerPort of the pod',
        "BAD_API_KEY: h.test/: field api-key of Secret routing is not base64; the namespace's routes are " +
          'withheld rather than left open',
      ],
    );
    const text = JSON.stringify(events);
    for (const secret of ['c2VjcmV0', 'not-base64', Buffer.from('supersecret').toString('base64'), 'supersecret']) {
      assert.ok(!text.includes(secret), `no Event holds ${secret}`);
    }
  });
});
