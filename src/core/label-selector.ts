import { labelValueProblem, qualifiedNameProblem } from './kube-names.js';

// The label selector grammar of the Kubernetes API server (apimachinery/pkg/labels):
// requirements joined by ",", each one of `key`, `!key`, `key=v`, `key==v`, `key!=v`,
// `key in (v1,v2)`, `key notin (v1,v2)`. We parse it ourselves so that a bad selector is
// refused at start-up and so that manifest sources and the fake API server filter pods
// exactly as the API server would.

export type Requirement =
  { key: string; op: 'exists' | 'notexists' } | { key: string; op: 'in' | 'notin'; values: string[] };

export interface LabelSelector {
  readonly text: string;
  readonly requirements: readonly Requirement[];
}

export class SelectorSyntaxError extends Error {}

type Token = { kind: 'word'; text: string } | { kind: 'op'; text: '=' | '==' | '!=' | '!' | ',' | '(' | ')' };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '=' && text[i + 1] === '=') {
      tokens.push({ kind: 'op', text: '==' });
      i += 2;
    } else if (c === '!' && text[i + 1] === '=') {
      tokens.push({ kind: 'op', text: '!=' });
      i += 2;
    } else if (c === '=' || c === '!' || c === ',' || c === '(' || c === ')') {
      tokens.push({ kind: 'op', text: c });
      i++;
    } else {
      let j = i;
      while (j < text.length && !/[\s=!,()]/.test(text[j] as string)) j++;
      tokens.push({ kind: 'word', text: text.slice(i, j) });
      i = j;
    }
  }
  return tokens;
}

function checkKey(key: string): string {
  const problem = qualifiedNameProblem(key);
  if (problem !== null) throw new SelectorSyntaxError(`label key "${key}" ${problem}`);
  return key;
}

function checkValue(value: string): string {
  const problem = labelValueProblem(value);
  if (problem !== null) throw new SelectorSyntaxError(`label value "${value}" ${problem}`);
  return value;
}

/** Parses a label selector; throws SelectorSyntaxError with a readable message. */
export function parseLabelSelector(text: string): LabelSelector {
  const tokens = tokenize(text);
  const requirements: Requirement[] = [];
  let pos = 0;
  const peek = (): Token | undefined => tokens[pos];
  const next = (): Token | undefined => tokens[pos++];
  const expectWord = (what: string): string => {
    const t = next();
    if (t?.kind !== 'word')
      throw new SelectorSyntaxError(`expected ${what}${t ? ` but found "${t.text}"` : ' at the end'}`);
    return t.text;
  };

  const valueList = (): string[] => {
    const open = next();
    if (open?.kind !== 'op' || open.text !== '(') throw new SelectorSyntaxError('expected "(" after in/notin');
    const values: string[] = [];
    for (;;) {
      const t = peek();
      if (t?.kind === 'word') {
        values.push(checkValue(t.text));
        pos++;
      } else {
        values.push(''); // `in (a,)` allows an empty value, as apimachinery does
      }
      const sep = next();
      if (sep?.kind === 'op' && sep.text === ')') break;
      if (sep?.kind !== 'op' || sep.text !== ',') throw new SelectorSyntaxError('expected "," or ")" in value list');
    }
    return values;
  };

  if (tokens.length === 0) throw new SelectorSyntaxError('selector is empty');
  for (;;) {
    const first = peek();
    if (first?.kind === 'op' && first.text === '!') {
      pos++;
      requirements.push({ key: checkKey(expectWord('a label key after "!"')), op: 'notexists' });
    } else {
      const key = checkKey(expectWord('a label key'));
      const op = peek();
      if (op === undefined || (op.kind === 'op' && op.text === ',')) {
        requirements.push({ key, op: 'exists' });
      } else if (op.kind === 'op' && (op.text === '=' || op.text === '==' || op.text === '!=')) {
        pos++;
        const v = peek();
        let value = '';
        if (v?.kind === 'word') {
          value = checkValue(v.text);
          pos++;
        }
        requirements.push({ key, op: op.text === '!=' ? 'notin' : 'in', values: [value] });
      } else if (op.kind === 'word' && (op.text === 'in' || op.text === 'notin')) {
        pos++;
        requirements.push({ key, op: op.text, values: valueList() });
      } else {
        throw new SelectorSyntaxError(`unexpected "${op.text}" after label key "${key}"`);
      }
    }
    const sep = next();
    if (sep === undefined) break;
    if (sep.kind !== 'op' || sep.text !== ',') throw new SelectorSyntaxError(`expected "," but found "${sep.text}"`);
  }
  return { text, requirements };
}

/** Whether a set of labels satisfies every requirement of the selector. */
export function matchesLabels(selector: LabelSelector, labels: Readonly<Record<string, string>> | undefined): boolean {
  const own = labels ?? {};
  return selector.requirements.every((r) => {
    const has = Object.prototype.hasOwnProperty.call(own, r.key);
    switch (r.op) {
      case 'exists':
        return has;
      case 'notexists':
        return !has;
      case 'in':
        return has && r.values.includes(own[r.key] as string);
      case 'notin':
        return !has || !r.values.includes(own[r.key] as string);
    }
  });
}
