// Sorted arrays changed by a few items at a time, as the route table's routes and
// rejections are: an edit costs a copy of the array (a memmove) and a binary search per
// item, never a sort of everything; and when everything changes, the sort and merge run
// in steps a caller may pause between (see time-slices.ts).

import { runNow, type Steps } from './time-slices.js';

export type Compare<T> = (a: T, b: T) => number;

/** The first index whose item is not below `item`. */
export function lowerBound<T>(sorted: readonly T[], item: T, compare: Compare<T>): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compare(sorted[mid] as T, item) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Above this many edits, filtering and merging beats one splice per edit. */
const SPLICE_LIMIT = 64;
/** Items sorted or merged between two points where the work may pause. */
const STEP = 4096;

/** Merges two sorted runs into `out` from `k` on; on ties `left` goes first. */
function* merging<T>(left: readonly T[], right: readonly T[], out: T[], k: number, compare: Compare<T>): Steps<void> {
  let i = 0;
  let j = 0;
  while (i < left.length && j < right.length) {
    if ((i + j) % STEP === STEP - 1) yield;
    out[k++] = compare(right[j] as T, left[i] as T) < 0 ? (right[j++] as T) : (left[i++] as T);
  }
  while (i < left.length) out[k++] = left[i++] as T;
  while (j < right.length) out[k++] = right[j++] as T;
}

/** Strings in UTF-16 code unit order, as `<` and a sort without a comparator have them. */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * `items` sorted (a new array; stable), in steps: runs of STEP items sorted at once, then
 * merged pairwise, so that sorting 200,000 routes never holds the event loop for long.
 */
export function* sortingInSteps<T>(items: readonly T[], compare: Compare<T>): Steps<T[]> {
  // Strings in text order sort fastest without a comparator (the order is the same).
  const native = (compare as unknown) === compareText;
  let runs: T[][] = [];
  for (let i = 0; i < items.length; i += STEP) {
    const run = items.slice(i, i + STEP);
    runs.push(native ? run.sort() : run.sort(compare));
    yield;
  }
  while (runs.length > 1) {
    const next: T[][] = [];
    for (let r = 0; r < runs.length; r += 2) {
      const left = runs[r] as T[];
      const right = runs[r + 1];
      if (right === undefined) {
        next.push(left);
        continue;
      }
      const out = new Array<T>(left.length + right.length);
      yield* merging(left, right, out, 0, compare);
      next.push(out);
    }
    runs = next;
  }
  return runs[0] ?? [];
}

/**
 * A new sorted array: `sorted` without the items of `removed` (found by identity, each
 * must be there) and with those of `added`. `sorted` itself is left as it was.
 */
export function patchSorted<T>(
  sorted: readonly T[],
  removed: readonly T[],
  added: readonly T[],
  compare: Compare<T>,
): T[] {
  return runNow(patchingSorted(sorted, removed, added, compare));
}

/** patchSorted, in steps a caller may pause between; `added` may come sorted already. */
export function* patchingSorted<T>(
  sorted: readonly T[],
  removed: readonly T[],
  added: readonly T[],
  compare: Compare<T>,
  options: { addedSorted?: boolean } = {},
): Steps<T[]> {
  if (removed.length + added.length <= SPLICE_LIMIT) {
    const out = sorted.slice();
    for (const item of removed) {
      let i = lowerBound(out, item, compare);
      while (i < out.length && out[i] !== item) i++;
      if (i === out.length) throw new Error('patchSorted: a removed item is not in the array');
      out.splice(i, 1);
    }
    for (const item of added) out.splice(lowerBound(out, item, compare), 0, item);
    return out;
  }
  const gone = new Set<T>();
  for (let i = 0; i < removed.length; i++) {
    if (i % STEP === STEP - 1) yield;
    gone.add(removed[i] as T);
  }
  const kept: T[] = [];
  for (let i = 0; i < sorted.length; i++) {
    if (i % STEP === STEP - 1) yield;
    const item = sorted[i] as T;
    if (!gone.has(item)) kept.push(item);
  }
  if (kept.length !== sorted.length - gone.size) throw new Error('patchSorted: a removed item is not in the array');
  const incoming = options.addedSorted === true ? added : yield* sortingInSteps(added, compare);
  // An added item equal to a kept one goes after it, where splicing would put it before;
  // equal items are interchangeable wherever this is used, so either order is the same table.
  const out = new Array<T>(kept.length + incoming.length);
  yield* merging(kept, incoming, out, 0, compare);
  return out;
}

export interface SortedChanges<T> {
  /** Items of `before` that `after` lacks. */
  removed: T[];
  /** Items of `after` that `before` lacks. */
  added: T[];
  /** Pairs (before, after) of distinct objects that are equal. */
  renewed: Array<[T, T]>;
}

/**
 * What changed between two sorted arrays. Identical items cost one comparison; items at
 * the same place in the order that are not identical are equal when `same` says so.
 */
export function sortedChanges<T>(
  before: readonly T[],
  after: readonly T[],
  compare: Compare<T>,
  same: (a: T, b: T) => boolean = () => true,
): SortedChanges<T> {
  return runNow(changesInSteps(before, after, compare, same));
}

/** sortedChanges, in steps a caller may pause between (200,000 routes take a while). */
export function* changesInSteps<T>(
  before: readonly T[],
  after: readonly T[],
  compare: Compare<T>,
  same: (a: T, b: T) => boolean = () => true,
): Steps<SortedChanges<T>> {
  return (yield* changesUpTo(before, after, compare, same, Infinity)) as SortedChanges<T>;
}

/** changesInSteps, or null as soon as more than `limit` items were removed or added. */
export function* changesUpTo<T>(
  before: readonly T[],
  after: readonly T[],
  compare: Compare<T>,
  same: (a: T, b: T) => boolean,
  limit: number,
): Steps<SortedChanges<T> | null> {
  if (Math.abs(before.length - after.length) > limit) return null;
  const removed: T[] = [];
  const added: T[] = [];
  const renewed: Array<[T, T]> = [];
  let i = 0;
  let j = 0;
  // Counted apart: i + j moves by two when both advance, and could step over any mark.
  for (let n = 1; i < before.length && j < after.length; n++) {
    if (n % STEP === 0) {
      if (removed.length + added.length > limit) return null;
      yield;
    }
    const a = before[i] as T;
    const b = after[j] as T;
    if (a === b) {
      i++;
      j++;
      continue;
    }
    const order = compare(a, b);
    if (order < 0) {
      removed.push(a);
      i++;
    } else if (order > 0) {
      added.push(b);
      j++;
    } else {
      if (same(a, b)) {
        renewed.push([a, b]);
      } else {
        removed.push(a);
        added.push(b);
      }
      i++;
      j++;
    }
  }
  for (; i < before.length; i++) removed.push(before[i] as T);
  for (; j < after.length; j++) added.push(after[j] as T);
  return removed.length + added.length > limit ? null : { removed, added, renewed };
}
