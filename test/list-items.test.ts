import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ListItemReader } from '../src/sources/list-items.js';
import { clusterPod } from './support/realistic-pods.js';

// The streaming list reader against JSON.parse: whatever the items hold and however the
// text is cut into chunks, it hands out the same items and the same other fields.

function readInChunks(text: string, cuts: number[]): { items: unknown[]; rest: Record<string, unknown> } {
  const items: unknown[] = [];
  const reader = new ListItemReader((item) => void items.push(item));
  let from = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    reader.write(text.slice(from, cut));
    from = cut;
  }
  reader.write(text.slice(from));
  return { items, rest: reader.end() };
}

const jsonValue = fc.jsonValue({ maxDepth: 3 });
// Strings with what could confuse a scanner: quotes, backslashes, braces, brackets, commas.
const tricky = fc.string({
  unit: fc.constantFrom('"', '\\', '{', '}', '[', ']', ',', ':', 'a', ' ', '\n', 'é', '\u2028'),
});

test('items and the other fields come out as JSON.parse reads them, however the text is chunked', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.dictionary(tricky, fc.oneof(jsonValue, tricky)),
          fc.record({ metadata: fc.record({ name: tricky }) }),
        ),
        { maxLength: 6 },
      ),
      fc.dictionary(fc.constantFrom('kind', 'apiVersion', 'metadata', 'extra'), fc.oneof(jsonValue, tricky)),
      fc.boolean(),
      fc.array(fc.nat(), { maxLength: 12 }),
      fc.boolean(),
      (items, others, itemsFirst, rawCuts, spaced) => {
        const doc = itemsFirst ? { items, ...others } : { ...others, items };
        const text = spaced ? JSON.stringify(doc, null, 2) : JSON.stringify(doc);
        const cuts = rawCuts.map((c) => c % (text.length + 1));
        const { items: read, rest } = readInChunks(text, cuts);
        const reparsed = JSON.parse(text) as { items: unknown[] };
        assert.deepEqual(read, reparsed.items);
        assert.deepEqual({ ...rest, items: reparsed.items }, reparsed);
      },
    ),
    { numRuns: 2_000 },
  );
});

test('a pod list, cut every few bytes, gives each pod whole', () => {
  const list = {
    kind: 'PodList',
    apiVersion: 'v1',
    metadata: { resourceVersion: '42', continue: 'abc' },
    items: [clusterPod(1), clusterPod(2)],
  };
  const text = JSON.stringify(list);
  const cuts = Array.from({ length: Math.floor(text.length / 7) }, (_, i) => i * 7);
  const { items, rest } = readInChunks(text, cuts);
  assert.deepEqual(items, list.items);
  assert.deepEqual(rest, { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '42', continue: 'abc' } });
});

test('an empty or null items field, and a text that ends early', () => {
  assert.deepEqual(readInChunks('{"metadata":{"resourceVersion":"1"},"items":[]}', []), {
    items: [],
    rest: { metadata: { resourceVersion: '1' } },
  });
  assert.deepEqual(readInChunks('{"items":null,"metadata":{}}', [3, 9]), { items: [], rest: { metadata: {} } });
  const reader = new ListItemReader(() => {});
  reader.write('{"metadata":{},"items":[{"a":1}');
  assert.throws(() => reader.end(), /ended early/);
});
