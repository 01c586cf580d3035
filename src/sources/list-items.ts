// Reads a Kubernetes list response (`{"kind":..,"metadata":{..},"items":[{..},{..}]}`) as
// it arrives, handing out each item on its own as soon as its text is complete. A page of
// 500 pods is 2.5 MB of JSON and ten times that once parsed whole; item by item, only one
// pod is ever held raw, and what is kept of it is all that survives.

type State = 'top' | 'key' | 'afterKey' | 'value' | 'items' | 'done';

/**
 * Splits the text of a list into its items (parsed one by one) and the rest of the
 * document (parsed at the end). Strings and escapes are followed exactly, so braces in
 * annotation values do not confuse it.
 */
export class ListItemReader<T> {
  private state: State = 'top';
  /** The text of the value being read (a top-level field or an item). */
  private buffer = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  private key = '';
  private readonly rest: Record<string, unknown> = {};

  constructor(private readonly onItem: (item: unknown) => T | void) {}

  write(chunk: string): void {
    let i = 0;
    while (i < chunk.length) {
      switch (this.state) {
        case 'top':
          i = this.skipTo(chunk, i, '{', () => (this.state = 'key'));
          break;
        case 'key':
          i = this.readKey(chunk, i);
          break;
        case 'afterKey':
          i = this.skipTo(chunk, i, ':', () => (this.state = this.key === 'items' ? 'items' : 'value'));
          break;
        case 'value':
        case 'items':
          i = this.readValue(chunk, i);
          break;
        case 'done':
          return;
      }
    }
  }

  /** The top-level fields other than the items (kind, metadata, ...), once the text is complete. */
  end(): Record<string, unknown> {
    if (this.state !== 'done') throw new SyntaxError('the list ended early');
    return this.rest;
  }

  private skipTo(chunk: string, from: number, char: string, then: () => void): number {
    const at = chunk.indexOf(char, from);
    if (at < 0) return chunk.length;
    then();
    return at + 1;
  }

  /** Reads `"name"` (or the `}` that ends the document) between top-level fields. */
  private readKey(chunk: string, from: number): number {
    let i = from;
    if (!this.inString) {
      while (i < chunk.length && chunk[i] !== '"' && chunk[i] !== '}') i++;
      if (i === chunk.length) return i;
      if (chunk[i] === '}') {
        this.state = 'done';
        return chunk.length;
      }
      this.inString = true;
      this.buffer = '"';
      i++;
    }
    const end = this.stringEnd(chunk, i);
    this.buffer += chunk.slice(i, end);
    if (this.inString) return chunk.length;
    this.key = JSON.parse(this.buffer) as string;
    this.buffer = '';
    this.state = 'afterKey';
    return end;
  }

  /**
   * Follows a value: a top-level field's value until the `,` or `}` after it, or, for
   * `items`, each element of the array until the `]`. The hot loop of the reader: strings
   * are skipped with indexOf, depth and position live in locals.
   */
  private readValue(chunk: string, from: number): number {
    const items = this.state === 'items';
    const n = chunk.length;
    let depth = this.depth;
    let start = from;
    let i = from;
    if (this.inString) i = this.stringEnd(chunk, i);
    while (i < n) {
      const c = chunk.charCodeAt(i);
      if (c === 0x22 /* " */) {
        // The common case: the next quote closes the string (no backslash right before it).
        const quote = chunk.indexOf('"', i + 1);
        if (quote > 0 && chunk.charCodeAt(quote - 1) !== 0x5c) {
          i = quote + 1;
        } else {
          this.inString = true;
          i = this.stringEnd(chunk, i + 1);
        }
      } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
        if (items && depth === 1) start = i; // an item begins
        depth++;
        i++;
      } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
        if (depth === 0) {
          this.depth = 0;
          return this.endValue(chunk, start, i, true);
        }
        depth--;
        i++;
        if (items && depth === 1) {
          this.onItem(JSON.parse(this.buffer === '' ? chunk.slice(start, i) : this.buffer + chunk.slice(start, i)));
          this.buffer = '';
          start = i;
        } else if (items && depth === 0) {
          this.depth = 0;
          return this.endValue(chunk, i, i, false); // the items array closed
        }
      } else if (c === 0x2c /* , */ && depth === 0) {
        this.depth = 0;
        return this.endValue(chunk, start, i, false);
      } else {
        i++;
      }
    }
    this.depth = depth;
    // Keep only the unfinished part: inside an item, or a top-level value.
    if (!items || depth >= 2) this.buffer += chunk.slice(start);
    return n;
  }

  /** Stores a finished top-level value; `closed` when the document's `}` ended it. */
  private endValue(chunk: string, start: number, at: number, closed: boolean): number {
    if (this.state === 'value') {
      // Defined, not assigned: a field named __proto__ must stay a field.
      Object.defineProperty(this.rest, this.key, {
        value: JSON.parse(this.buffer + chunk.slice(start, at)),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    this.buffer = '';
    if (closed) {
      this.state = 'done';
      return chunk.length;
    }
    this.state = 'key';
    // After the items array, the `,` or `}` is read as the next key's lead-in.
    return this.state === 'key' && chunk[at] === ',' ? at + 1 : at;
  }

  /** Index just after the closing quote of the string being read, or the chunk end. */
  private stringEnd(chunk: string, from: number): number {
    let i = from;
    if (this.escaped) {
      // The previous chunk ended on a backslash: this character is escaped.
      this.escaped = false;
      i++;
    }
    for (;;) {
      const quote = chunk.indexOf('"', i);
      if (quote < 0) {
        this.escaped = backslashesBefore(chunk, chunk.length, i) % 2 === 1;
        return chunk.length;
      }
      if (backslashesBefore(chunk, quote, i) % 2 === 0) {
        this.inString = false;
        return quote + 1;
      }
      i = quote + 1; // an escaped quote
    }
  }
}

/** How many backslashes come right before `at`, looking no further back than `from`. */
function backslashesBefore(chunk: string, at: number, from: number): number {
  let n = 0;
  while (at - n - 1 >= from && chunk.charCodeAt(at - n - 1) === 0x5c) n++;
  return n;
}
