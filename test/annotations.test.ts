import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { hostProblem, parseHosts, parsePaths, pathProblem, splitEntries } from '../src/core/annotations.js';

describe('hosts annotation', () => {
  it('splits on any whitespace, lower-cases and de-duplicates', () => {
    const { hosts, rejected } = parseHosts('  Test.K8s.Local\t192.168.0.1\n\ntest.k8s.local  api.example.com ');
    assert.deepEqual(hosts, ['test.k8s.local', '192.168.0.1', 'api.example.com']);
    assert.deepEqual(rejected, []);
  });

  it('accepts a 63-character label and a 253-character name', () => {
    const label63 = 'a'.repeat(63);
    const name253 = [label63, label63, label63, 'a'.repeat(61)].join('.');
    assert.equal(name253.length, 253);
    assert.deepEqual(parseHosts(`${label63}.example.com ${name253}`).rejected, []);
  });

  for (const [host, reason] of [
    ['exa_mple.com', /not a DNS hostname/],
    ['-example.com', /not a DNS hostname/],
    ['example-.com', /not a DNS hostname/],
    ['example..com', /empty label/],
    ['.example.com', /empty label/],
    ['example.com.', /empty label/],
    [`${'a'.repeat(64)}.com`, /longer than 63/],
    [`${'a.'.repeat(127)}com`, /longer than 253/],
    ['256.1.1.1', /not a valid IPv4/],
    ['01.2.3.4', /not a valid IPv4/],
    ['1.2.3', /neither a DNS hostname nor an IPv4/],
    ['*.example.com', /not a DNS hostname/],
    ['example.com;', /not a DNS hostname/],
    ['exämple.com', /not a DNS hostname/],
    ['example.com:8080', /not a DNS hostname/],
  ] as const) {
    it(`rejects ${JSON.stringify(host)} and keeps the others`, () => {
      const { hosts, rejected } = parseHosts(`ok.example.com ${host}`);
      assert.deepEqual(hosts, ['ok.example.com']);
      assert.equal(rejected.length, 1);
      assert.equal(rejected[0]?.value, host);
      assert.equal(rejected[0]?.code, 'BAD_HOST');
      assert.match(rejected[0]?.reason ?? '', reason);
    });
  }
});

const ports = new Set([80, 3000]);

describe('paths annotation', () => {
  it('parses PORT:PATH entries split on any whitespace', () => {
    assert.deepEqual(parsePaths('80:/ \n 3000:/nodejs  3000:/api/v1/', ports), {
      paths: [
        { port: 80, path: '/' },
        { port: 3000, path: '/nodejs' },
        { port: 3000, path: '/api/v1/' },
      ],
      rejected: [],
    });
  });

  it('splits PORT from PATH at the first colon only', () => {
    assert.deepEqual(parsePaths('3000:/a:b', ports).paths, [{ port: 3000, path: '/a:b' }]);
  });

  it('counts the same entry twice once, and rejects the same path on another port', () => {
    const { paths, rejected } = parsePaths('80:/x 80:/x 3000:/x', ports);
    assert.deepEqual(paths, [{ port: 80, path: '/x' }]);
    assert.deepEqual(
      rejected.map((r) => [r.value, r.code]),
      [['3000:/x', 'DUPLICATE_PATH']],
    );
  });
});

describe('paths annotation: characters, ports and declared ports', () => {
  for (const [entry, code, reason] of [
    ['/nodejs', 'BAD_PATH', /not PORT:PATH/],
    ['http:/x', 'BAD_PORT', /not a number/],
    ['0:/x', 'BAD_PORT', /not a number from 1 to 65535/],
    ['65536:/x', 'BAD_PORT', /not a number from 1 to 65535/],
    ['080:/x', 'BAD_PORT', /not a number/],
    ['8080:/x', 'PORT_NOT_DECLARED', /port 8080 is not a containerPort/],
    ['80:x', 'BAD_PATH', /does not start with "\/"/],
    ['80:/a;b', 'BAD_PATH', /contains ";"/],
    ['80:/a{b}', 'BAD_PATH', /contains "\{"/],
    ['80:/a"b', 'BAD_PATH', /contains """/],
    ["80:/a'b", 'BAD_PATH', /contains "'"/],
    ['80:/a\\b', 'BAD_PATH', /contains "\\"/],
    ['80:/$host', 'BAD_PATH', /contains "\$"/],
    ['80:/a%20b', 'BAD_PATH', /contains "%"/],
    ['80:/a#b', 'BAD_PATH', /contains "#"/],
    ['80:/a?b', 'BAD_PATH', /contains "\?"/],
    ['80:/caf\u00e9', 'BAD_PATH', /contains U\+00E9/],
    ['80:/a\u0000b', 'BAD_PATH', /contains U\+0000/],
    ['80:/a//b', 'BAD_PATH', /merges slashes/],
    ['80:/a/../b', 'BAD_PATH', /dot segment|"\." or "\.\." segment/],
    ['80:/a/.', 'BAD_PATH', /"\." or "\.\." segment/],
    [`80:/${'a'.repeat(1024)}`, 'BAD_PATH', /longer than 1024/],
  ] as const) {
    it(`rejects ${JSON.stringify(entry.slice(0, 40))} (${code})`, () => {
      const { paths, rejected } = parsePaths(`80:/ok ${entry}`, ports);
      assert.deepEqual(paths, [{ port: 80, path: '/ok' }]);
      assert.equal(rejected.length, 1);
      assert.equal(rejected[0]?.code, code);
      assert.equal(rejected[0]?.value, entry);
      assert.match(rejected[0]?.reason ?? '', reason);
    });
  }

  it('takes any valid port from a pod that declares no container ports', () => {
    const { paths, rejected } = parsePaths('8080:/queue 9:/nope 70000:/x', new Set());
    assert.deepEqual(paths, [
      { port: 8080, path: '/queue' },
      { port: 9, path: '/nope' },
    ]);
    assert.deepEqual(
      rejected.map((r) => [r.value, r.code]),
      [['70000:/x', 'BAD_PORT']],
    );
  });

  it('keeps the containerPort check as a typo guard where the pod declares ports', () => {
    const { paths, rejected } = parsePaths('8080:/queue 8008:/typo', new Set([8080]));
    assert.deepEqual(paths, [{ port: 8080, path: '/queue' }]);
    assert.deepEqual(
      rejected.map((r) => [r.value, r.code, r.reason]),
      [['8008:/typo', 'PORT_NOT_DECLARED', 'port 8008 is not a containerPort of the pod']],
    );
  });

  it('allows every RFC 3986 path character it does not have to refuse', () => {
    assert.equal(pathProblem('/A-z0-9._~!&()*+,=:@/x/'), null);
    assert.equal(pathProblem('/a/.well-known/..x/...'), null, 'dots inside a segment are plain characters');
  });
});

// The parsers take shortcuts for the common case (a loop instead of a regex split, one
// regex for a whole hostname); these compare them with the rules written out plainly.
describe('annotation grammar, against the rules written out', () => {
  const text = (chars: string[]) => fc.array(fc.constantFrom(...chars), { maxLength: 30 }).map((c) => c.join(''));

  it('splits entries exactly where /\\s+/ does, Unicode spaces included', () => {
    const chars = [
      'a',
      'B',
      '1',
      ':',
      '/',
      ' ',
      '\t',
      '\n',
      '\r',
      '\v',
      '\f',
      '\u00a0',
      '\u2003',
      '\u3000',
      '\ufeff',
      '\u2028',
      '\u0085',
      '\u001c',
      'é',
    ];
    fc.assert(
      fc.property(text(chars), (value) => {
        assert.deepEqual(
          splitEntries(value),
          value.split(/\s+/).filter((e) => e.length > 0),
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('accepts exactly the RFC 1123 hostnames and the IPv4 addresses', () => {
    const label = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
    const octet = /^(0|[1-9][0-9]{0,2})$/;
    const acceptable = (host: string): boolean => {
      if (host.length > 253) return false;
      const labels = host.split('.');
      if (/^[0-9]+$/.test(labels[labels.length - 1] ?? ''))
        return labels.length === 4 && labels.every((p) => octet.test(p) && Number(p) <= 255);
      return labels.every((l) => label.test(l));
    };
    const host = fc.oneof(
      text(['a', 'z', '0', '9', '-', '.', '_', 'A', '*']),
      fc
        .array(
          fc.oneof(text(['a', '1', '-']), fc.constantFrom('a'.repeat(63), 'b'.repeat(64), '255', '256', '01', '0')),
          { maxLength: 6 },
        )
        .map((l) => l.join('.')),
      fc.constantFrom('a.'.repeat(126) + 'b', 'a.'.repeat(126) + 'bc', '1.2.3.4', '1-2', 'a.1-2', 'a.12'),
    );
    fc.assert(
      fc.property(host, (h) => {
        assert.equal(hostProblem(h) === null, acceptable(h), `${JSON.stringify(h)}: ${hostProblem(h)}`);
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses a path with a "." or ".." segment exactly when one of its segments is one', () => {
    fc.assert(
      fc.property(text(['/', '.', 'a']), (tail) => {
        const path = `/${tail}`;
        const dotted = path
          .split('/')
          .slice(1)
          .some((s) => s === '.' || s === '..');
        const problem = pathProblem(path) ?? '';
        assert.equal(problem.includes('segment'), dotted && !path.includes('//'), `${path}: ${problem}`);
      }),
      { numRuns: 2000 },
    );
  });
});
