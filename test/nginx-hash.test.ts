import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { fnv1a32, nginxHashBucket, serverNamesHashSizes } from '../nginx/hash.js';

// The hashes read char codes instead of encoding each name into a Buffer; for any text,
// including non-ASCII, they must give what hashing the encoded bytes gives.

const anyChar = fc.integer({ min: 0, max: 0x2fff }).map((code) => String.fromCharCode(code));
const text = fc.oneof(
  fc.string({ unit: anyChar, maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.stringMatching(/^[a-z0-9.-]{1,60}$/),
  fc.constantFrom('é', 'bücher.example', '日本.jp', '\u{1F600}', '\ud800x'),
);

test('FNV-1a of a text is that of its UTF-8 bytes', () => {
  const reference = (s: string): number => {
    let hash = 0x811c9dc5;
    for (const byte of Buffer.from(s, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
    return hash;
  };
  fc.assert(fc.property(text, (s) => assert.equal(fnv1a32(s), reference(s))));
  assert.equal(fnv1a32('test.k8s.local/nodejs'), 1866206336);
});

test("nginx's name hash takes the low byte of each char code of the lower-cased name, as latin1 encoding does", () => {
  const reference = (name: string, size: number): number => {
    let key = 0n;
    for (const byte of Buffer.from(name.toLowerCase(), 'latin1')) key = (key * 31n + BigInt(byte)) & ((1n << 64n) - 1n);
    return Number(key % BigInt(size));
  };
  fc.assert(
    fc.property(text, fc.integer({ min: 1, max: 2 ** 26 }), (name, size) =>
      assert.equal(nginxHashBucket(name, size), reference(name, size)),
    ),
  );
});

test('hash sizes do not depend on the order of the names', () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.stringMatching(/^[a-z0-9.-]{1,80}$/), { maxLength: 700 }), (names) => {
      assert.deepEqual(serverNamesHashSizes([...names].reverse()), serverNamesHashSizes(names));
    }),
    { numRuns: 30 },
  );
});
