import assert from 'node:assert/strict';
import { isIPv6 } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  crc32Long,
  FALL_BACK_TO_ROUND_ROBIN,
  findChashPoint,
  getChashPeer,
  initChashPoints,
  MAX_CHASH_TRIES,
  POINTS_PER_WEIGHT,
  type ChashPeer,
  type ChashPoints,
} from '../proxy/consistent-hash.js';
import { ipv6Bytes, ngxInet6Ntop, remoteAddrText } from '../proxy/remote-addr.js';

// nginx's consistent hash as the in-process proxy computes it, against values a real nginx
// 1.22.1 gave. GOLDEN was made by `node --import tsx test/support/chash-golden.ts`: nginx
// with one upstream per server list (`hash $remote_addr consistent;`), $remote_addr taken
// from the X-Client-Address header by the realip module, and its debug log read for each
// request: the key it hashed, the point the walk started on, and that point's server.
// Each case is [sent in X-Client-Address, nginx's $remote_addr, point, server].

type GoldenCase = [sent: string, key: string, point: number, server: string];

const GOLDEN: { servers: string[]; cases: GoldenCase[] }[] = [
  {
    servers: ['10.244.69.6:3000', '10.244.69.9:3000', '10.244.69.8:3000'],
    cases: [
      ['127.0.0.1', '127.0.0.1', 397, '10.244.69.8:3000'],
      ['10.0.0.1', '10.0.0.1', 75, '10.244.69.8:3000'],
      ['192.168.1.20', '192.168.1.20', 71, '10.244.69.9:3000'],
      ['203.0.113.9', '203.0.113.9', 348, '10.244.69.9:3000'],
      ['8.8.8.8', '8.8.8.8', 418, '10.244.69.8:3000'],
      ['1.2.3.4', '1.2.3.4', 108, '10.244.69.6:3000'],
      ['0.0.0.0', '0.0.0.0', 410, '10.244.69.8:3000'],
      ['172.16.5.77', '172.16.5.77', 292, '10.244.69.8:3000'],
      ['100.64.0.1', '100.64.0.1', 431, '10.244.69.8:3000'],
      ['198.51.100.23', '198.51.100.23', 393, '10.244.69.6:3000'],
      ['11.22.33.44', '11.22.33.44', 74, '10.244.69.9:3000'],
      ['::1', '::1', 310, '10.244.69.6:3000'],
      ['2001:db8::1', '2001:db8::1', 1, '10.244.69.6:3000'],
      ['2001:DB8:0:0:0:0:0:1', '2001:db8::1', 1, '10.244.69.6:3000'],
      ['fe80::1', 'fe80::1', 42, '10.244.69.9:3000'],
      ['::ffff:192.0.2.128', '::ffff:192.0.2.128', 183, '10.244.69.9:3000'],
      ['::ffff:c000:280', '::ffff:192.0.2.128', 183, '10.244.69.9:3000'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 67, '10.244.69.9:3000'],
      ['2001:0db8:85a3:0000:0000:8a2e:0370:7334', '2001:db8:85a3::8a2e:370:7334', 356, '10.244.69.8:3000'],
      ['::', '::', 310, '10.244.69.6:3000'],
      ['::0.0.1.2', '::0.0.1.2', 402, '10.244.69.8:3000'],
      ['::1.2.3.4', '::1.2.3.4', 444, '10.244.69.6:3000'],
      ['1::', '1::', 108, '10.244.69.6:3000'],
      ['2001:db8::ffff:0:1', '2001:db8::ffff:0:1', 214, '10.244.69.8:3000'],
      ['fd00::3:0:0:4', 'fd00::3:0:0:4', 142, '10.244.69.8:3000'],
    ],
  },
  {
    servers: ['10.0.0.1', '10.0.0.2:8080', '[fd00::1]:3000', '[fd00::2]'],
    cases: [
      ['127.0.0.1', '127.0.0.1', 529, '[fd00::1]:3000'],
      ['10.0.0.1', '10.0.0.1', 109, '[fd00::1]:3000'],
      ['192.168.1.20', '192.168.1.20', 97, '10.0.0.1'],
      ['203.0.113.9', '203.0.113.9', 458, '[fd00::2]'],
      ['8.8.8.8', '8.8.8.8', 561, '[fd00::1]:3000'],
      ['1.2.3.4', '1.2.3.4', 156, '10.0.0.1'],
      ['0.0.0.0', '0.0.0.0', 556, '[fd00::2]'],
      ['172.16.5.77', '172.16.5.77', 393, '[fd00::2]'],
      ['100.64.0.1', '100.64.0.1', 570, '[fd00::1]:3000'],
      ['198.51.100.23', '198.51.100.23', 517, '[fd00::2]'],
      ['11.22.33.44', '11.22.33.44', 107, '10.0.0.1'],
      ['::1', '::1', 404, '10.0.0.2:8080'],
      ['2001:db8::1', '2001:db8::1', 0, '10.0.0.2:8080'],
      ['2001:DB8:0:0:0:0:0:1', '2001:db8::1', 0, '10.0.0.2:8080'],
      ['fe80::1', 'fe80::1', 39, '10.0.0.1'],
      ['::ffff:192.0.2.128', '::ffff:192.0.2.128', 247, '[fd00::2]'],
      ['::ffff:c000:280', '::ffff:192.0.2.128', 247, '[fd00::2]'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 84, '10.0.0.2:8080'],
      ['2001:0db8:85a3:0000:0000:8a2e:0370:7334', '2001:db8:85a3::8a2e:370:7334', 469, '10.0.0.1'],
      ['::', '::', 404, '10.0.0.2:8080'],
      ['::0.0.1.2', '::0.0.1.2', 540, '10.0.0.2:8080'],
      ['::1.2.3.4', '::1.2.3.4', 591, '[fd00::2]'],
      ['1::', '1::', 156, '10.0.0.1'],
      ['2001:db8::ffff:0:1', '2001:db8::ffff:0:1', 289, '10.0.0.1'],
      ['fd00::3:0:0:4', 'fd00::3:0:0:4', 190, '10.0.0.2:8080'],
    ],
  },
  {
    servers: [
      '10.1.0.1:3000',
      '10.1.0.2:3000',
      '10.1.0.3:3000',
      '10.1.0.4:3000',
      '10.1.0.5:3000',
      '10.1.0.6:3000',
      '10.1.0.7:3000',
      '10.1.0.8:3000',
      '10.1.0.9:3000',
      '10.1.0.10:3000',
    ],
    cases: [
      ['127.0.0.1', '127.0.0.1', 1370, '10.1.0.1:3000'],
      ['10.0.0.1', '10.0.0.1', 219, '10.1.0.6:3000'],
      ['192.168.1.20', '192.168.1.20', 207, '10.1.0.10:3000'],
      ['203.0.113.9', '203.0.113.9', 1177, '10.1.0.10:3000'],
      ['8.8.8.8', '8.8.8.8', 1432, '10.1.0.7:3000'],
      ['1.2.3.4', '1.2.3.4', 353, '10.1.0.9:3000'],
      ['0.0.0.0', '0.0.0.0', 1415, '10.1.0.6:3000'],
      ['172.16.5.77', '172.16.5.77', 980, '10.1.0.9:3000'],
      ['100.64.0.1', '100.64.0.1', 1451, '10.1.0.8:3000'],
      ['198.51.100.23', '198.51.100.23', 1341, '10.1.0.10:3000'],
      ['11.22.33.44', '11.22.33.44', 216, '10.1.0.2:3000'],
      ['::1', '::1', 1027, '10.1.0.3:3000'],
      ['2001:db8::1', '2001:db8::1', 2, '10.1.0.6:3000'],
      ['2001:DB8:0:0:0:0:0:1', '2001:db8::1', 2, '10.1.0.6:3000'],
      ['fe80::1', 'fe80::1', 106, '10.1.0.9:3000'],
      ['::ffff:192.0.2.128', '::ffff:192.0.2.128', 575, '10.1.0.5:3000'],
      ['::ffff:c000:280', '::ffff:192.0.2.128', 575, '10.1.0.5:3000'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 181, '10.1.0.6:3000'],
      ['2001:0db8:85a3:0000:0000:8a2e:0370:7334', '2001:db8:85a3::8a2e:370:7334', 1228, '10.1.0.10:3000'],
      ['::', '::', 1027, '10.1.0.3:3000'],
      ['::0.0.1.2', '::0.0.1.2', 1386, '10.1.0.3:3000'],
      ['::1.2.3.4', '::1.2.3.4', 1482, '10.1.0.4:3000'],
      ['1::', '1::', 353, '10.1.0.9:3000'],
      ['2001:db8::ffff:0:1', '2001:db8::ffff:0:1', 708, '10.1.0.2:3000'],
      ['fd00::3:0:0:4', 'fd00::3:0:0:4', 440, '10.1.0.9:3000'],
    ],
  },
  {
    servers: ['10.0.0.7:3000', '10.0.0.7:3000', '10.0.0.8:3000'],
    cases: [
      ['127.0.0.1', '127.0.0.1', 268, '10.0.0.7:3000'],
      ['10.0.0.1', '10.0.0.1', 41, '10.0.0.8:3000'],
      ['192.168.1.20', '192.168.1.20', 37, '10.0.0.8:3000'],
      ['203.0.113.9', '203.0.113.9', 226, '10.0.0.8:3000'],
      ['8.8.8.8', '8.8.8.8', 289, '10.0.0.8:3000'],
      ['1.2.3.4', '1.2.3.4', 69, '10.0.0.7:3000'],
      ['0.0.0.0', '0.0.0.0', 279, '10.0.0.7:3000'],
      ['172.16.5.77', '172.16.5.77', 190, '10.0.0.8:3000'],
      ['100.64.0.1', '100.64.0.1', 291, '10.0.0.7:3000'],
      ['198.51.100.23', '198.51.100.23', 265, '10.0.0.8:3000'],
      ['11.22.33.44', '11.22.33.44', 41, '10.0.0.8:3000'],
      ['::1', '::1', 194, '10.0.0.8:3000'],
      ['2001:db8::1', '2001:db8::1', 3, '10.0.0.7:3000'],
      ['2001:DB8:0:0:0:0:0:1', '2001:db8::1', 3, '10.0.0.7:3000'],
      ['fe80::1', 'fe80::1', 17, '10.0.0.8:3000'],
      ['::ffff:192.0.2.128', '::ffff:192.0.2.128', 107, '10.0.0.8:3000'],
      ['::ffff:c000:280', '::ffff:192.0.2.128', 107, '10.0.0.8:3000'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 33, '10.0.0.7:3000'],
      ['2001:0db8:85a3:0000:0000:8a2e:0370:7334', '2001:db8:85a3::8a2e:370:7334', 238, '10.0.0.7:3000'],
      ['::', '::', 194, '10.0.0.8:3000'],
      ['::0.0.1.2', '::0.0.1.2', 273, '10.0.0.7:3000'],
      ['::1.2.3.4', '::1.2.3.4', 292, '10.0.0.7:3000'],
      ['1::', '1::', 69, '10.0.0.7:3000'],
      ['2001:db8::ffff:0:1', '2001:db8::ffff:0:1', 132, '10.0.0.7:3000'],
      ['fd00::3:0:0:4', 'fd00::3:0:0:4', 89, '10.0.0.7:3000'],
    ],
  },
];

const RULES = { weight: 1, maxFails: 1, failTimeoutMs: 10_000 };

function freshPeers(n: number): ChashPeer[] {
  return Array.from({ length: n }, () => ({ currentWeight: 0, effectiveWeight: 1, fails: 0, checked: 0 }));
}

/** The first pick of a fresh request from `key`, as the proxy makes it. */
function firstPick(points: ChashPoints, peers: ChashPeer[], key: string, now = 1_000_000): number {
  return getChashPeer(points, peers, [], { hash: findChashPoint(points, crc32Long(key)), tries: 0 }, now, RULES);
}

describe("consistent hash: the steps of nginx's", () => {
  it('takes the CRC-32 nginx takes (ngx_crc32_long)', () => {
    assert.equal(crc32Long('123456789'), 0xcbf43926);
    assert.equal(crc32Long(''), 0);
    assert.equal(crc32Long('10.0.0.1'), crc32Long(Buffer.from('10.0.0.1').toString('latin1')));
  });

  it('gives each server 160 points, sorted, without repeats', () => {
    const points = initChashPoints(['10.0.0.1:3000', '10.0.0.2:3000', '10.0.0.3']);
    assert.equal(points.number, 3 * POINTS_PER_WEIGHT);
    for (let i = 1; i < points.number; i++)
      assert.ok((points.hash[i - 1] as number) < (points.hash[i] as number), `point ${i} ascends`);
    const perServer = points.servers.map((_, s) => points.server.filter((x) => x === s).length);
    assert.deepEqual(perServer, [160, 160, 160]);
  });

  it("starts each key on the point a real nginx starts it on, and finds that point's server", () => {
    let checked = 0;
    for (const { servers, cases } of GOLDEN) {
      const points = initChashPoints(servers);
      for (const [sent, key, point, server] of cases) {
        assert.equal(remoteAddrText(sent), key, `$remote_addr of ${sent}`);
        const found = findChashPoint(points, crc32Long(key));
        assert.equal(found, point, `the point of ${key} among ${servers.join(' ')}`);
        assert.equal(
          points.servers[points.server[found % points.number] as number],
          server,
          `the server of ${key}'s point`,
        );
        checked++;
      }
    }
    assert.equal(
      checked,
      GOLDEN.reduce((n, g) => n + g.cases.length, 0),
    );
  });

  it('lets two peers of one address share its points, taking turns by smooth weighted round robin', () => {
    const points = initChashPoints(['10.0.0.7:3000', '10.0.0.7:3000', '10.0.0.8:3000']);
    assert.deepEqual(points.servers, ['10.0.0.7:3000', '10.0.0.8:3000']);
    assert.deepEqual(points.peersOf, [[0, 1], [2]]);
    // A key on 10.0.0.7:3000's points goes to peer 0, then 1, then 0, as nginx's current_weight has it.
    const key = GOLDEN[3]?.cases.find((c) => c[3] === '10.0.0.7:3000')?.[1] as string;
    const peers = freshPeers(3);
    assert.deepEqual(
      [firstPick(points, peers, key), firstPick(points, peers, key), firstPick(points, peers, key)],
      [0, 1, 0],
    );
  });
});

describe('consistent hash: the walk (get_chash_peer)', () => {
  const servers = Array.from({ length: 6 }, (_, i) => `10.2.0.${i + 1}:8080`);
  const points = initChashPoints(servers);

  it('skips tried and failed peers, moving on point by point, and stays on the point it took', () => {
    const key = '198.51.100.7';
    const start = findChashPoint(points, crc32Long(key));
    const first = firstPick(points, freshPeers(6), key);
    assert.equal(first, points.server[start % points.number]);
    // The peer failed (max_fails=1, within fail_timeout): the walk moves to the next point whose peer differs.
    const peers = freshPeers(6);
    (peers[first] as ChashPeer).fails = 1;
    (peers[first] as ChashPeer).checked = 1_000_000;
    const walk = { hash: start, tries: 0 };
    const second = getChashPeer(points, peers, [], walk, 1_000_000, RULES);
    let expected = start;
    while (points.server[expected % points.number] === first) expected++;
    assert.equal(second, points.server[expected % points.number]);
    assert.equal(walk.hash, expected, 'the walk stays on the point it took');
    assert.equal(walk.tries, expected - start, 'one try per point passed');
    // A retry after `second` failed starts there, with `second` now tried.
    const third = getChashPeer(points, peers, [second], walk, 1_000_000, RULES);
    assert.notEqual(third, first);
    assert.notEqual(third, second);
  });

  it('takes a failed peer again once its fail_timeout has passed', () => {
    const key = '203.0.113.50';
    const first = firstPick(points, freshPeers(6), key);
    const peers = freshPeers(6);
    Object.assign(peers[first] as ChashPeer, { fails: 1, checked: 0 });
    assert.notEqual(firstPick(points, peers, key, RULES.failTimeoutMs), first, 'still failed at fail_timeout');
    assert.equal(firstPick(points, peers, key, RULES.failTimeoutMs + 1), first, 'taken again after it');
    assert.equal((peers[first] as ChashPeer).checked, RULES.failTimeoutMs + 1, 'and checked then');
  });

  it('hands the request to round robin after more than 20 points without a usable peer', () => {
    const peers = freshPeers(6);
    // Every peer failed: 21 points are passed, then nginx falls back.
    for (const p of peers) Object.assign(p, { fails: 1, checked: 1_000_000 });
    const walk = { hash: 5, tries: 0 };
    assert.equal(getChashPeer(points, peers, [], walk, 1_000_000, RULES), FALL_BACK_TO_ROUND_ROBIN);
    assert.equal(walk.tries, MAX_CHASH_TRIES + 1);
    assert.equal(walk.hash, 5 + MAX_CHASH_TRIES + 1);
    // Later calls for the same request fall back at once.
    assert.equal(getChashPeer(points, freshPeers(6), [], walk, 1_000_000, RULES), FALL_BACK_TO_ROUND_ROBIN);
    assert.equal(walk.tries, MAX_CHASH_TRIES + 1);
  });
});

describe('consistent hash: what affinity promises', () => {
  const address = fc.oneof(
    fc.ipV4(),
    fc.ipV6().map((a) => ngxInet6Ntop(ipv6Bytes(a) as Uint8Array)),
  );
  const serverList = fc.uniqueArray(
    fc.tuple(fc.ipV4(), fc.constantFrom(80, 3000, 8080)).map(([ip, port]) => (port === 80 ? ip : `${ip}:${port}`)),
    { minLength: 2, maxLength: 12 },
  );

  it('keeps a client on its pod: the same address always gets the same pod', () => {
    fc.assert(
      fc.property(serverList, address, (list, key) => {
        const points = initChashPoints(list);
        assert.equal(firstPick(points, freshPeers(list.length), key), firstPick(points, freshPeers(list.length), key));
      }),
    );
  });

  it('moves only the clients of a pod that goes, and only to it the clients of a pod that comes', () => {
    fc.assert(
      fc.property(serverList, fc.array(address, { minLength: 50, maxLength: 50 }), fc.nat(), (list, keys, which) => {
        const gone = which % list.length;
        const fewer = list.filter((_, i) => i !== gone);
        const all = initChashPoints(list);
        const after = initChashPoints(fewer);
        for (const key of keys) {
          const before = list[firstPick(all, freshPeers(list.length), key)];
          const now = fewer[firstPick(after, freshPeers(fewer.length), key)];
          if (before !== list[gone]) assert.equal(now, before, `${key} stays on ${before} when ${list[gone]} goes`);
        }
      }),
      { numRuns: 50 },
    );
  });
});

describe('$remote_addr as nginx writes it (ngx_inet6_ntop)', () => {
  it('leaves IPv4 as it is and rewrites IPv6 as nginx does', () => {
    assert.equal(remoteAddrText('192.0.2.1'), '192.0.2.1');
    assert.equal(remoteAddrText('2001:DB8:0:0:0:0:0:1'), '2001:db8::1');
    assert.equal(remoteAddrText('::ffff:c000:280'), '::ffff:192.0.2.128');
    assert.equal(remoteAddrText('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1', 'the first of two equal zero runs');
    assert.equal(remoteAddrText('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1', 'one zero group is not compressed');
    assert.equal(remoteAddrText('::2'), '::2');
    assert.equal(remoteAddrText('::102'), '::0.0.1.2');
    assert.equal(remoteAddrText('::0.0.0.1'), '::1');
    assert.equal(remoteAddrText('fe80::1%eth0'), 'fe80::1', 'no zone');
  });

  it('writes text that reads back as the same address, for any 16 bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const text = ngxInet6Ntop(bytes);
        assert.ok(isIPv6(text), text);
        assert.deepEqual(ipv6Bytes(text), bytes);
        assert.equal(remoteAddrText(text), text, 'nginx text is a fixed point');
      }),
      { numRuns: 2_000 },
    );
  });
});
