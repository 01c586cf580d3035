import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseAffinity } from '../src/core/annotations.js';
import { defaultConfig } from '../src/core/config.js';
import type { Pod } from '../src/core/kube-objects.js';
import { buildRouteTable, routingFacts, sameRoutingFacts } from '../src/core/route-table.js';
import { pod } from './support/objects.js';

// Session affinity in the route table: the routingAffinity annotation, what a value that is
// not understood does, and the rule when the pods of one route disagree (the owning
// namespace's oldest pod on the route decides; the others stay routed, with a reason).

const config = defaultConfig();

/** A pod on route h/ (port 80) created at `created`, asking for `affinity` (absent when undefined). */
const web = (name: string, created: string, affinity?: string, namespace = 'shop'): Pod =>
  pod(name, {
    namespace,
    ip: `10.0.0.${name.length + (name.charCodeAt(name.length - 1) % 200)}`,
    hosts: 'h',
    paths: '80:/',
    created,
    ...(affinity === undefined ? {} : { annotations: { routingAffinity: affinity } }),
  });

describe('the affinity annotation', () => {
  it('reads "ip", and nothing from an empty or blank value', () => {
    assert.deepEqual(parseAffinity('ip'), { affinity: 'ip', rejected: null });
    assert.deepEqual(parseAffinity(' ip\n'), { affinity: 'ip', rejected: null });
    assert.deepEqual(parseAffinity(''), { affinity: null, rejected: null });
    assert.deepEqual(parseAffinity(' \t'), { affinity: null, rejected: null });
  });

  it('refuses anything else whole, saying what it takes', () => {
    for (const value of ['IP', 'cookie', 'ip ip', 'ip;', 'hash $remote_addr', '$remote_addr']) {
      const { affinity, rejected } = parseAffinity(value);
      assert.equal(affinity, null, value);
      assert.equal(rejected?.code, 'BAD_AFFINITY', value);
      assert.equal(rejected?.value, value);
      assert.match(rejected?.reason ?? '', /"ip" keeps each client address on one pod/);
    }
  });
});

describe('route affinity', () => {
  it('is ip when the pods ask for it, and null (round robin) without the annotation or with an empty one', () => {
    const sticky = buildRouteTable(
      config,
      [web('a', '2024-01-01T00:00:00Z', 'ip'), web('b', '2024-01-02T00:00:00Z', 'ip')],
      [],
    );
    assert.deepEqual(
      sticky.routes.map((r) => [r.host, r.path, r.affinity, r.backends.length]),
      [['h', '/', 'ip', 2]],
    );
    assert.deepEqual(sticky.rejections, []);
    const plain = buildRouteTable(config, [web('a', '2024-01-01T00:00:00Z'), web('b', '2024-01-02T00:00:00Z', '')], []);
    assert.deepEqual(
      plain.routes.map((r) => r.affinity),
      [null],
    );
    assert.deepEqual(plain.rejections, []);
  });

  it('rejects a value it does not understand, routes the pod anyway, and never lets the value into the route', () => {
    const table = buildRouteTable(config, [web('a', '2024-01-01T00:00:00Z', 'sticky;}')], []);
    assert.deepEqual(
      table.routes.map((r) => [r.affinity, r.backends.map((b) => b.pod)]),
      [[null, ['a']]],
    );
    assert.deepEqual(
      table.rejections.map((r) => [r.pod, r.field, r.value, r.code]),
      [['a', 'metadata.annotations.routingAffinity', 'sticky;}', 'BAD_AFFINITY']],
    );
  });

  it(
    'follows the oldest pod when pods disagree; the others stay routed with AFFINITY_CONFLICT naming the route ' +
      'and the winner',
    () => {
      const table = buildRouteTable(
        config,
        [
          web('young', '2024-03-01T00:00:00Z', 'ip'),
          web('old', '2024-01-01T00:00:00Z'),
          web('mid', '2024-02-01T00:00:00Z', 'ip'),
        ],
        [],
      );
      assert.deepEqual(
        table.routes.map((r) => [r.affinity, r.backends.map((b) => b.pod)]),
        [[null, ['mid', 'old', 'young']]],
      );
      assert.deepEqual(
        table.rejections.map((r) => [r.pod, r.field, r.value, r.code]),
        [
          ['mid', 'route', 'h/', 'AFFINITY_CONFLICT'],
          ['young', 'route', 'h/', 'AFFINITY_CONFLICT'],
        ],
      );
      assert.equal(
        table.rejections[0]?.reason,
        'host h path / has no affinity (round robin), as its oldest pod old asks; ' +
          "this pod asks for affinity ip and is routed with the route's",
      );
    },
  );
});

describe('route affinity: ties, refusals and owners', () => {
  it('breaks a tie in creation time by pod name', () => {
    const same = '2024-01-01T00:00:00Z';
    const table = buildRouteTable(config, [web('b', same), web('a', same, 'ip')], []);
    assert.deepEqual(
      table.routes.map((r) => r.affinity),
      ['ip'],
    );
    assert.deepEqual(
      table.rejections.map((r) => [r.pod, r.code]),
      [['b', 'AFFINITY_CONFLICT']],
    );
  });

  it('counts a refused value as no affinity', () => {
    const table = buildRouteTable(
      config,
      [web('old', '2024-01-01T00:00:00Z', 'IP'), web('new', '2024-02-01T00:00:00Z', 'ip')],
      [],
    );
    assert.deepEqual(
      table.routes.map((r) => r.affinity),
      [null],
    );
    assert.deepEqual(
      table.rejections.map((r) => [r.pod, r.code]),
      [
        ['new', 'AFFINITY_CONFLICT'],
        ['old', 'BAD_AFFINITY'],
      ],
    );
  });

  it('is decided by the owning namespace only: the pods of a namespace that lost the route do not count', () => {
    const table = buildRouteTable(
      config,
      [web('owner', '2024-02-01T00:00:00Z', 'ip', 'a'), web('intruder', '2024-01-01T00:00:00Z', undefined, 'b')],
      [],
    );
    // The intruder is older, so its namespace owns the route: its round robin wins, alone.
    assert.deepEqual(
      table.routes.map((r) => [r.namespace, r.affinity]),
      [['b', null]],
    );
    assert.deepEqual(
      table.rejections.map((r) => [r.pod, r.code]),
      [['owner', 'ROUTE_CLAIMED']],
    );
  });
});

describe('route affinity: the annotation, facts and order', () => {
  it('reads the annotation AFFINITY_ANNOTATION names', () => {
    const renamed = defaultConfig({ affinityAnnotation: 'publicAffinity' });
    const pods = [
      pod('a', {
        ip: '10.0.0.1',
        hosts: 'h',
        paths: '80:/',
        annotations: { publicAffinity: 'ip', routingAffinity: 'nonsense' },
      }),
      pod('b', { ip: '10.0.0.2', hosts: 'h', paths: '80:/', annotations: { publicAffinity: 'ip' } }),
    ];
    const table = buildRouteTable(renamed, pods, []);
    assert.deepEqual(
      table.routes.map((r) => r.affinity),
      ['ip'],
    );
    assert.deepEqual(table.rejections, []);
  });

  it("is part of a pod's routing facts: a change of affinity alone routes the pod again", () => {
    const before = web('a', '2024-01-01T00:00:00Z');
    const after = web('a', '2024-01-01T00:00:00Z', 'ip');
    assert.equal(sameRoutingFacts(config, before, after), false);
    assert.equal(routingFacts(config, after).metadata?.annotations?.routingAffinity, 'ip');
    assert.equal(sameRoutingFacts(config, after, web('a', '2024-01-01T00:00:00Z', 'ip')), true);
  });

  it('does not depend on the order the pods come in', () => {
    const pods = [
      web('p1', '2024-01-01T00:00:00Z', 'ip'),
      web('p2', '2024-01-01T00:00:00Z'),
      web('p3', '2024-01-02T00:00:00Z', 'bad'),
      web('p4', 'not a date', 'ip'),
      web('p5', '2024-01-03T00:00:00Z', ''),
    ];
    const reference = buildRouteTable(config, pods, []);
    fc.assert(
      fc.property(fc.shuffledSubarray(pods, { minLength: pods.length }), (shuffled) => {
        assert.deepEqual(buildRouteTable(config, shuffled, []), reference);
      }),
    );
    assert.deepEqual(
      reference.routes.map((r) => r.affinity),
      ['ip'],
    );
  });
});
