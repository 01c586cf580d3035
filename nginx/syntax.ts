// How values are written into nginx.conf. The route table only lets through values made
// of plain characters; this is the second line of defence: nothing written through here
// can end a directive, open or close a block, start a comment or name a variable.

/** Characters nginx reads as part of a bare word in every place we write one. */
const BARE_WORD = /^[A-Za-z0-9\-._~!&*+,=:@/[\]]+$/;
/** What may appear inside a double-quoted string: printable ASCII without "$". */
const QUOTABLE = /^[\x20-\x23\x25-\x7e]*$/;

export class UnsafeValueError extends Error {}

/**
 * A value as one nginx word: bare when that is unambiguous, otherwise double-quoted with
 * "\" and '"' escaped. Throws for control characters, non-ASCII and "$", which no quoting
 * makes inert (nginx expands variables inside quotes).
 */
export function nginxWord(value: string): string {
  return BARE_WORD.test(value) ? value : nginxQuoted(value);
}

/** A value as a double-quoted nginx string; throws where nginxWord does. */
export function nginxQuoted(value: string): string {
  if (!QUOTABLE.test(value)) {
    throw new UnsafeValueError(`refusing to write ${JSON.stringify(value)} into nginx.conf`);
  }
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** Text for a comment: anything that could end the line, or is not printable ASCII, becomes "?". */
export function nginxComment(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}

/** The nginx variable that holds a request header: $http_ + lower case, "-" as "_". */
export function headerVariable(header: string): string {
  if (!/^[A-Za-z0-9-]+$/.test(header)) throw new UnsafeValueError(`not a header name: ${JSON.stringify(header)}`);
  return `$http_${header.toLowerCase().replace(/-/g, '_')}`;
}
