// Blocks of text kept in key order, each followed by a newline, as UTF-8 bytes in chunks
// of a few hundred blocks: changing one block re-makes its chunk only, so the text of
// 20,000 server blocks after one change costs the copy of one chunk (some 100 KB), and the
// chunks that did not change are the same Buffer objects as before. Those are handed out
// as they are (pieces()): whoever needs the text (a hash, a file write) reads the chunks
// one after the other and never needs the megabytes as one string. The text of a block is
// not kept apart from its chunk: one copy of the configuration is held, outside the heap.

import { lowerBound } from '../src/core/sorted-changes.js';

interface Chunk<K, V> {
  keys: K[];
  /** What the owner keeps with each block (hash sizing facts of a server block's host, say). */
  values: V[];
  /** A block's text when it changed since `bytes` was made; null when its bytes are there. */
  texts: Array<string | null>;
  /** Where each unchanged block's bytes (newline included) start and end in `bytes`. */
  starts: number[];
  ends: number[];
  bytes: Buffer;
  /** Whether every block is in `bytes` as it is. */
  current: boolean;
}

const CHUNK = 256;
const NEWLINE = 10;
const EMPTY = Buffer.alloc(0);

function emptyChunk<K, V>(): Chunk<K, V> {
  return { keys: [], values: [], texts: [], starts: [], ends: [], bytes: EMPTY, current: true };
}

/** Makes the bytes of a chunk whose blocks are all new: joined at once, measured at once. */
function fillBytes<K, V>(chunk: Chunk<K, V>): void {
  const texts = chunk.texts as string[];
  if (texts.length === 0) {
    Object.assign(chunk, emptyChunk<K, V>());
    return;
  }
  const joined = `${texts.join('\n')}\n`;
  const bytes = Buffer.from(joined, 'utf8');
  // Plain ASCII (what nginx.conf holds): a byte per character, no need to measure each block.
  const ascii = bytes.length === joined.length;
  let at = 0;
  for (let i = 0; i < texts.length; i++) {
    const text = texts[i] as string;
    chunk.starts[i] = at;
    at += (ascii ? text.length : Buffer.byteLength(text, 'utf8')) + 1;
    chunk.ends[i] = at;
  }
  chunk.texts = new Array<string | null>(texts.length).fill(null);
  chunk.bytes = bytes;
  chunk.current = true;
}

/** Makes the bytes of a chunk whose blocks changed: a new Buffer, the old one left as it was. */
function refresh<K, V>(chunk: Chunk<K, V>): void {
  const { texts, starts, ends, bytes } = chunk;
  if (texts.every((t) => t !== null)) return fillBytes(chunk);
  let size = 0;
  for (let i = 0; i < texts.length; i++) {
    const text = texts[i] as string | null;
    size += text === null ? (ends[i] as number) - (starts[i] as number) : Buffer.byteLength(text, 'utf8') + 1;
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (let i = 0; i < texts.length;) {
    const text = texts[i] as string | null;
    if (text !== null) {
      starts[i] = at;
      at += out.write(text, at, 'utf8');
      out[at++] = NEWLINE;
      ends[i] = at;
      texts[i] = null;
      i++;
      continue;
    }
    // A run of unchanged blocks that lie one after the other: one copy.
    let j = i + 1;
    while (j < texts.length && texts[j] === null && starts[j] === ends[j - 1]) j++;
    const from = starts[i] as number;
    const length = (ends[j - 1] as number) - from;
    bytes.copy(out, at, from, from + length);
    for (let k = i; k < j; k++) {
      starts[k] = (starts[k] as number) - from + at;
      ends[k] = (ends[k] as number) - from + at;
    }
    at += length;
    i = j;
  }
  chunk.bytes = out;
  chunk.current = true;
}

export class BlockList<K, V = undefined> {
  private readonly chunks: Array<Chunk<K, V>> = [];
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
      if (this.compare((this.chunks[mid] as Chunk<K, V>).keys[0] as K, key) <= 0) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  has(key: K): boolean {
    if (this.chunks.length === 0) return false;
    const chunk = this.chunks[this.chunkFor(key)] as Chunk<K, V>;
    const i = lowerBound(chunk.keys, key, this.compare);
    return i < chunk.keys.length && this.compare(chunk.keys[i] as K, key) === 0;
  }

  /** Adds the block of `key`, or replaces its text, with the value kept with it. */
  set(key: K, text: string, value: V): void {
    if (this.chunks.length === 0) this.chunks.push(emptyChunk<K, V>());
    const at = this.chunkFor(key);
    const chunk = this.chunks[at] as Chunk<K, V>;
    const i = lowerBound(chunk.keys, key, this.compare);
    chunk.current = false;
    if (i < chunk.keys.length && this.compare(chunk.keys[i] as K, key) === 0) {
      chunk.keys[i] = key;
      chunk.values[i] = value;
      chunk.texts[i] = text;
      return;
    }
    chunk.keys.splice(i, 0, key);
    chunk.values.splice(i, 0, value);
    chunk.texts.splice(i, 0, text);
    chunk.starts.splice(i, 0, 0);
    chunk.ends.splice(i, 0, 0);
    this.count++;
    if (chunk.keys.length >= 2 * CHUNK) {
      // Both halves keep reading their unchanged blocks from the bytes they shared.
      this.chunks.splice(at + 1, 0, {
        keys: chunk.keys.splice(CHUNK),
        values: chunk.values.splice(CHUNK),
        texts: chunk.texts.splice(CHUNK),
        starts: chunk.starts.splice(CHUNK),
        ends: chunk.ends.splice(CHUNK),
        bytes: chunk.bytes,
        current: false,
      });
    }
  }

  delete(key: K): void {
    if (this.chunks.length === 0) return;
    const at = this.chunkFor(key);
    const chunk = this.chunks[at] as Chunk<K, V>;
    const i = lowerBound(chunk.keys, key, this.compare);
    if (i === chunk.keys.length || this.compare(chunk.keys[i] as K, key) !== 0) return;
    chunk.keys.splice(i, 1);
    chunk.values.splice(i, 1);
    chunk.texts.splice(i, 1);
    chunk.starts.splice(i, 1);
    chunk.ends.splice(i, 1);
    chunk.current = false;
    this.count--;
    if (chunk.keys.length === 0) this.chunks.splice(at, 1);
  }

  /**
   * Adds a block after all the others (its key must be above theirs), as a first render
   * fills the list. A chunk is made into bytes as soon as it is full, so the texts of only
   * one chunk are held at a time, never those of the whole configuration.
   */
  append(key: K, text: string, value: V): void {
    let last = this.chunks[this.chunks.length - 1];
    if (last === undefined || last.keys.length >= CHUNK) {
      if (last !== undefined && !last.current) refresh(last);
      last = emptyChunk<K, V>();
      this.chunks.push(last);
    }
    last.keys.push(key);
    last.values.push(value);
    last.texts.push(text);
    last.starts.push(0);
    last.ends.push(0);
    last.current = false;
    this.count++;
  }

  /** Replaces everything with these blocks, whose keys must be in order. */
  fill(keys: readonly K[], texts: readonly string[], values: readonly V[]): void {
    this.clear();
    keys.forEach((key, i) => this.append(key, texts[i] as string, values[i] as V));
  }

  clear(): void {
    this.chunks.length = 0;
    this.count = 0;
  }

  /** Every key, in order. */
  keys(): K[] {
    return this.chunks.flatMap((c) => c.keys);
  }

  /** The value kept with every block, in key order. */
  values(): V[] {
    return this.chunks.flatMap((c) => c.values);
  }

  /**
   * The blocks in key order, each followed by a newline, as UTF-8 chunks. A chunk whose
   * blocks did not change is the same Buffer as last time; none is ever changed once
   * handed out.
   */
  pieces(): Buffer[] {
    const out: Buffer[] = [];
    for (const chunk of this.chunks) {
      if (!chunk.current) refresh(chunk);
      if (chunk.bytes.length > 0) out.push(chunk.bytes);
    }
    return out;
  }

  /** The blocks in key order joined with newlines, as one string (tests, previews). */
  text(): string {
    const all = Buffer.concat(this.pieces());
    return all.length === 0 ? '' : all.toString('utf8', 0, all.length - 1);
  }
}
