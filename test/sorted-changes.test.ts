import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { changesInSteps, changesUpTo, patchSorted, sortedChanges, sortingInSteps } from '../src/core/sorted-changes.js';
import { BlockList } from '../nginx/block-list.js';

// The sorted-array helpers behind the incremental table and renderer, against plain
// sorting, with edits big enough to take every path (one splice per edit, or a merge).

interface Item {
  key: number;
  label: string;
}
const byKey = (a: Item, b: Item): number => a.key - b.key;
const items = fc.array(fc.record({ key: fc.integer({ min: 0, max: 50 }), label: fc.constantFrom('x', 'y') }), {
  maxLength: 300,
});

describe('sorted changes: patchSorted and sorting', () => {
  it('patchSorted gives what sorting the edited items gives, keeping the array it was given', () => {
    fc.assert(
      fc.property(items, items, fc.array(fc.boolean(), { maxLength: 300 }), (start, added, drop) => {
        const sorted = [...start].sort(byKey);
        const copy = [...sorted];
        const removed = sorted.filter((_, i) => drop[i] === true);
        const out = patchSorted(sorted, removed, added, byKey);
        const expected = [...sorted.filter((item) => !removed.includes(item)), ...added].sort(byKey);
        assert.deepEqual(
          out.map((i) => i.key),
          expected.map((i) => i.key),
        );
        assert.equal(new Set(out).size, out.length);
        for (const item of [...added, ...sorted.filter((item) => !removed.includes(item))])
          assert.ok(out.includes(item));
        assert.deepEqual(sorted, copy);
      }),
    );
  });

  it('sorts as a stable sort does, in steps, also past the size of one run', () => {
    let seed = 7;
    const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (const size of [0, 1, 4095, 4096, 4097, 20_000]) {
      const input = Array.from({ length: size }, (_, i) => ({ key: Math.floor(random() * 500), label: String(i) }));
      const steps = sortingInSteps(input, (a, b) => a.key - b.key);
      let pauses = 0;
      let step = steps.next();
      for (; !step.done; step = steps.next()) pauses++;
      assert.deepEqual(
        step.value,
        [...input].sort((a, b) => a.key - b.key),
        `size ${size}`,
      );
      if (size >= 20_000) assert.ok(pauses >= 5, `${pauses} pauses for ${size} items`);
    }
  });

  it('patchSorted refuses to remove what is not there', () => {
    assert.throws(() => patchSorted([{ key: 1, label: 'x' }], [{ key: 1, label: 'x' }], [], byKey), /not in the array/);
  });
});

describe('sorted changes: sortedChanges and changesUpTo', () => {
  it('sortedChanges finds what was removed, added and renewed', () => {
    fc.assert(
      fc.property(items, items, (a, b) => {
        const unique = (list: Item[]) => [...new Map(list.map((i) => [i.key, i])).values()].sort(byKey);
        const before = unique(a);
        // Some items of `after` are the very objects of `before`, some equal copies, some new.
        const after = unique([
          ...b,
          ...before.filter((_, i) => i % 3 === 0),
          ...before.filter((_, i) => i % 3 === 1).map((i) => ({ ...i })),
        ]);
        const same = (x: Item, y: Item): boolean => x.label === y.label;
        const { removed, added, renewed } = sortedChanges(before, after, byKey, same);
        const inAfter = new Map(after.map((i) => [i.key, i]));
        const inBefore = new Map(before.map((i) => [i.key, i]));
        assert.deepEqual(
          removed,
          before.filter((i) => {
            const j = inAfter.get(i.key);
            return j === undefined || (j !== i && !same(i, j));
          }),
        );
        assert.deepEqual(
          added,
          after.filter((j) => {
            const i = inBefore.get(j.key);
            return i === undefined || (j !== i && !same(i, j));
          }),
        );
        assert.deepEqual(
          renewed,
          before.flatMap((i) => {
            const j = inAfter.get(i.key);
            return j !== undefined && j !== i && same(i, j) ? [[i, j]] : [];
          }),
        );
      }),
    );
  });

  it('changesUpTo gives up once more than its limit changed, and otherwise what sortedChanges gives', () => {
    const before = Array.from({ length: 10_000 }, (_, key) => ({ key, label: 'x' }));
    const after = before.map((item) => (item.key % 10 === 0 ? { ...item } : item));
    const run = <T>(steps: Generator<void, T, void>): T => {
      let step = steps.next();
      while (!step.done) step = steps.next();
      return step.value;
    };
    assert.equal(run(changesUpTo(before, after, byKey, () => false, 1_999)), null);
    assert.deepEqual(
      run(changesUpTo(before, after, byKey, () => false, 2_000)),
      sortedChanges(before, after, byKey, () => false),
    );
    assert.equal(run(changesUpTo(before, before.slice(0, 5_000), byKey, () => false, 4_999)), null);
    // Two tables that differ in every item (a relist that changed every pod) still pause.
    const renewed = before.map((item) => ({ ...item }));
    const steps = changesInSteps(before, renewed, byKey, () => false);
    let pauses = 0;
    while (!steps.next().done) pauses++;
    assert.ok(pauses >= 2, `${pauses} pauses comparing 10,000 changed items`);
  });
});

describe('sorted changes: block lists', () => {
  it('a block list joins its blocks in key order through any sequence of fills, sets and deletes', () => {
    const textArb = fc.oneof(fc.string({ maxLength: 3 }), fc.string({ maxLength: 3, unit: 'binary' }));
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 3000 }), { maxLength: 1200 }),
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 3000 }), textArb), { maxLength: 2500 }),
        (start, ops) => {
          const list = new BlockList<number>((a, b) => a - b);
          // Filled at once first (as a first render does), then edited.
          const initial = [...start].sort((a, b) => a - b);
          list.fill(
            initial,
            initial.map(String),
            initial.map(() => undefined),
          );
          const reference = new Map<number, string>(initial.map((k) => [k, String(k)]));
          const ordered = (): string[] =>
            [...reference.keys()].sort((a, b) => a - b).map((k) => reference.get(k) as string);
          const check = (): void => {
            assert.equal(list.text(), ordered().join('\n'));
            assert.equal(
              Buffer.concat(list.pieces()).toString('utf8'),
              ordered()
                .map((t) => `${t}\n`)
                .join(''),
            );
          };
          ops.forEach(([put, key, text], n) => {
            // Now and then, so that kept chunk bytes must follow later edits.
            if (n % 97 === 0) check();
            if (put) {
              list.set(key, text, undefined);
              reference.set(key, text);
            } else {
              list.delete(key);
              reference.delete(key);
            }
          });
          const keys = [...reference.keys()].sort((a, b) => a - b);
          assert.equal(list.size, keys.length);
          assert.deepEqual(list.keys(), keys);
          check();
          for (const k of [0, 1, 1500, 3000]) assert.equal(list.has(k), reference.has(k));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('a block list hands out the same piece again for a chunk whose blocks did not change', () => {
    const list = new BlockList<number>((a, b) => a - b);
    const keys = Array.from({ length: 2_000 }, (_, i) => i * 2);
    list.fill(
      keys,
      keys.map((k) => `block ${k}`),
      keys.map(() => undefined),
    );
    const before = list.pieces();
    assert.ok(before.length >= 4, `${before.length} pieces`);
    list.set(1_001, 'a new block', undefined);
    list.set(10, 'block 10, changed', undefined);
    const after = list.pieces();
    const kept = after.filter((p) => before.includes(p)).length;
    assert.equal(kept, after.length - 2, 'only the two chunks that changed are new');
    assert.equal(list.pieces()[0], after[0], 'asked again, nothing is made anew');
    assert.equal(
      Buffer.concat(before).toString(),
      keys.map((k) => `block ${k}\n`).join(''),
      'a piece handed out is never changed',
    );
  });
});
