// Blocks of text kept in key order and joined with newlines, in chunks of a few hundred
// blocks whose joined text is kept: changing one block re-joins its chunk only, so the
// text of 20,000 server blocks after one change costs a few dozen concatenations, not a
// join of 20,000 pieces.

import { lowerBound } from '../src/core/sorted-changes.js';

interface Chunk<K> {
  keys: K[];
  texts: string[];
  joined: string | null;
}

const CHUNK = 256;

export class BlockList<K> {
  private readonly chunks: Array<Chunk<K>> = [];
  private count = 0;

  /** `compare` orders the keys; keys it finds equal are the same block. */
  constructor(private readonly compare: (a: K, b: K) => number) {}

  get size(): number {
    return this.count;
  }

  /** The chunk that holds `key`, or would: the last whose first key is not above it. */
  private chunkFor(key: K): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.compare((this.chunks[mid] as Chunk<K>).keys[0] as K, key) <= 0) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  has(key: K): boolean {
    if (this.chunks.length === 0) return false;
    const chunk = this.chunks[this.chunkFor(key)] as Chunk<K>;
    const i = lowerBound(chunk.keys, key, this.compare);
    return i < chunk.keys.length && this.compare(chunk.keys[i] as K, key) === 0;
  }

  /** Adds the block of `key`, or replaces its text. */
  set(key: K, text: string): void {
    if (this.chunks.length === 0) this.chunks.push({ keys: [], texts: [], joined: null });
    const at = this.chunkFor(key);
    const chunk = this.chunks[at] as Chunk<K>;
    const i = lowerBound(chunk.keys, key, this.compare);
    chunk.joined = null;
    if (i < chunk.keys.length && this.compare(chunk.keys[i] as K, key) === 0) {
      chunk.keys[i] = key;
      chunk.texts[i] = text;
      return;
    }
    chunk.keys.splice(i, 0, key);
    chunk.texts.splice(i, 0, text);
    this.count++;
    if (chunk.keys.length >= 2 * CHUNK) {
      this.chunks.splice(at + 1, 0, { keys: chunk.keys.splice(CHUNK), texts: chunk.texts.splice(CHUNK), joined: null });
    }
  }

  delete(key: K): void {
    if (this.chunks.length === 0) return;
    const at = this.chunkFor(key);
    const chunk = this.chunks[at] as Chunk<K>;
    const i = lowerBound(chunk.keys, key, this.compare);
    if (i === chunk.keys.length || this.compare(chunk.keys[i] as K, key) !== 0) return;
    chunk.keys.splice(i, 1);
    chunk.texts.splice(i, 1);
    chunk.joined = null;
    this.count--;
    if (chunk.keys.length === 0) this.chunks.splice(at, 1);
  }

  /** Replaces everything with these blocks, whose keys must be in order. */
  fill(keys: readonly K[], texts: readonly string[]): void {
    this.chunks.length = 0;
    for (let i = 0; i < keys.length; i += CHUNK) {
      this.chunks.push({ keys: keys.slice(i, i + CHUNK), texts: texts.slice(i, i + CHUNK), joined: null });
    }
    this.count = keys.length;
  }

  clear(): void {
    this.chunks.length = 0;
    this.count = 0;
  }

  /** Every key, in order. */
  keys(): K[] {
    return this.chunks.flatMap((c) => c.keys);
  }

  /**
   * The blocks in key order, joined with newlines. The chunks are concatenated, not
   * joined: V8 keeps the result as a rope that its first reader (a hash, a file write)
   * flattens, so the megabytes are copied once, by whoever needs them flat.
   */
  text(): string {
    let out: string | null = null;
    for (const chunk of this.chunks) {
      chunk.joined ??= chunk.texts.join('\n');
      out = out === null ? chunk.joined : `${out}\n${chunk.joined}`;
    }
    return out ?? '';
  }
}
