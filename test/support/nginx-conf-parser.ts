// A reader of nginx.conf that splits text into directives the way nginx's own
// ngx_conf_read_token does (words, quoted strings with backslash escapes, "#" comments
// at the start of a word, ";" "{" "}"), so a test can see the structure nginx will see.

export interface Directive {
  name: string;
  args: string[];
  block?: Directive[];
}

export class NginxParseError extends Error {}

type Token = { kind: 'word'; text: string } | { kind: ';' | '{' | '}' };

const SPACE = new Set([' ', '\t', '\r', '\n']);
const ESCAPES: Record<string, string> = { '"': '"', "'": "'", '\\': '\\', t: '\t', r: '\r', n: '\n' };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (SPACE.has(c)) {
      i++;
    } else if (c === '#') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === ';' || c === '{' || c === '}') {
      tokens.push({ kind: c });
      i++;
    } else if (c === '"' || c === "'") {
      let word = '';
      i++;
      for (;;) {
        if (i >= text.length) throw new NginxParseError('unterminated quoted string');
        const q = text[i] as string;
        if (q === '\\' && i + 1 < text.length) {
          const next = text[i + 1] as string;
          word += ESCAPES[next] ?? `\\${next}`;
          i += 2;
        } else if (q === c) {
          i++;
          break;
        } else {
          word += q;
          i++;
        }
      }
      const after = text[i];
      if (after !== undefined && !SPACE.has(after) && after !== ';' && after !== '{' && after !== ')') {
        throw new NginxParseError(`unexpected ${JSON.stringify(after)} after a quoted string`);
      }
      tokens.push({ kind: 'word', text: word });
    } else {
      let word = '';
      while (i < text.length) {
        const w = text[i] as string;
        if (SPACE.has(w) || w === ';' || w === '}') break;
        if (w === '{' && !word.endsWith('$')) break;
        if (w === '\\' && i + 1 < text.length) {
          word += text.slice(i, i + 2);
          i += 2;
          continue;
        }
        word += w;
        i++;
      }
      tokens.push({ kind: 'word', text: word });
    }
  }
  return tokens;
}

/** The directives of a config, nested by block; throws NginxParseError on broken syntax. */
export function parseNginxConf(text: string): Directive[] {
  const tokens = tokenize(text);
  let pos = 0;
  const readBlock = (nested: boolean): Directive[] => {
    const directives: Directive[] = [];
    for (;;) {
      const t = tokens[pos];
      if (t === undefined) {
        if (nested) throw new NginxParseError('unexpected end of file, expecting "}"');
        return directives;
      }
      if (t.kind === '}') {
        if (!nested) throw new NginxParseError('unexpected "}"');
        pos++;
        return directives;
      }
      if (t.kind !== 'word') throw new NginxParseError(`unexpected "${t.kind}"`);
      const words: string[] = [];
      for (;;) {
        const w = tokens[pos];
        if (w?.kind !== 'word') break;
        words.push(w.text);
        pos++;
      }
      const end = tokens[pos++];
      const [name = '', ...args] = words;
      if (end?.kind === ';') directives.push({ name, args });
      else if (end?.kind === '{') directives.push({ name, args, block: readBlock(true) });
      else throw new NginxParseError(`directive "${name}" is not terminated by ";" or "{"`);
    }
  };
  return readBlock(false);
}
