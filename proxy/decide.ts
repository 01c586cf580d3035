import { timingSafeEqual } from 'node:crypto';
import type { Route } from '../src/core/route-table.js';
import { validName } from './headers.js';
import { headSizeStatus, LARGE_BUFFER, requestLineLength } from './head-size.js';
import { normalizeHost } from './host.js';
import type { RouteMatcher } from './matcher.js';
import type { RequestHeaders } from './request-headers.js';
import { normalizePath, splitTarget } from './uri.js';

// What nginx, on the rendered config, does with a request before it contacts a pod,
// decided from the request head alone. The checks run in nginx's order (request line,
// headers, server choice, location, then the location's `if`), because a request that
// breaks two rules must get the answer nginx gives.

/** The request line, as Node's IncomingMessage has it. */
export interface RequestHead {
  method?: string | undefined;
  /** The request-target exactly as sent. */
  url?: string | undefined;
  httpVersionMajor: number;
  httpVersionMinor: number;
  /** The headers as Node read them: [name, value, ...]. */
  rawHeaders: readonly string[];
}

export interface DecideOptions {
  /** nginx's client_max_body_size (1m by default); 0: no limit. */
  maxBodyBytes: number;
}

/** nginx 1.22 (as Debian ships it) refuses a request with more header lines than this. */
export const MAX_HEADER_LINES = 1000;

/** Headers nginx counts toward MAX_HEADER_LINES: those it does not ignore for their name. */
function tooManyHeaderLines(rawHeaders: readonly string[]): boolean {
  // Most requests are far below the limit, whatever their names.
  if (rawHeaders.length <= 2 * MAX_HEADER_LINES) return false;
  let lines = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) if (validName(rawHeaders[i] as string)) lines++;
  return lines > MAX_HEADER_LINES;
}

/** nginx's answer to a Transfer-Encoding header, after the Host check: null when it takes the body. */
function transferEncodingStatus(value: string, http11: boolean): 400 | 501 | null {
  if (!http11) return 400;
  // Only "chunked", alone and in any case; nginx implements no other coding.
  return value.length === 7 && value.toLowerCase() === 'chunked' ? null : 501;
}

export type Decision =
  /** Close without a response (nginx `return 444` in the default server). */
  | { action: 'drop' }
  | {
      action: 'respond';
      status: number;
      host?: string;
      location?: string;
      /**
       * nginx reads (and drops) the body the request declares before it closes: this answer refuses the request after
       * its head was read whole.
       */
      readsBody?: boolean;
    }
  | { action: 'forward'; route: Route; host: string; uri: string };

/** Compares without leaking, through timing, how much of the key a guess got right. */
export function apiKeyMatches(sent: string | undefined, expected: string): boolean {
  if (sent === undefined) return false;
  const a = Buffer.from(sent, 'latin1');
  const b = Buffer.from(expected, 'latin1');
  // The length of the expected key is not a secret worth the complexity of hiding.
  return a.length === b.length && timingSafeEqual(a, b);
}

function queryOf(uri: string): string {
  const q = uri.indexOf('?');
  if (q < 0) return '';
  const hash = uri.indexOf('#', q);
  return uri.slice(q + 1, hash < 0 ? undefined : hash);
}

const BAD_REQUEST = { action: 'respond', status: 400 } as const;
const URI_TOO_LONG = { action: 'respond', status: 414 } as const;
const VERSION_NOT_SUPPORTED = { action: 'respond', status: 505 } as const;
const NOT_IMPLEMENTED = { action: 'respond', status: 501, readsBody: true } as const;
/** A Transfer-Encoding nginx refuses: it then reads a body only by its Content-Length. */
const NOT_IMPLEMENTED_NO_LENGTH = { action: 'respond', status: 501 } as const;
const BAD_CODING = { action: 'respond', status: 400, readsBody: true } as const;
const NOT_ALLOWED = { action: 'respond', status: 405, readsBody: true } as const;
const TOO_LARGE = { action: 'respond', status: 413, readsBody: true } as const;
const NOT_FOUND = { action: 'respond', status: 404 } as const;
const FORBIDDEN = { action: 'respond', status: 403 } as const;
const DROP = { action: 'drop' } as const;

export function decide(
  head: RequestHead,
  headers: RequestHeaders,
  matcher: RouteMatcher,
  options: DecideOptions,
): Decision {
  // Request line: its length, version, target and the target's path.
  const method = head.method ?? '';
  const url = head.url ?? '';
  const lineLength = requestLineLength(method, url);
  if (lineLength > LARGE_BUFFER) return URI_TOO_LONG;
  // HTTP/2 and above are refused from the first digit (Node passes only "HTTP/2.0" on); an
  // HTTP/0.9 line with headers as Node reads it is no request nginx takes.
  if (head.httpVersionMajor >= 2) return VERSION_NOT_SUPPORTED;
  if (head.httpVersionMajor === 0) return BAD_REQUEST;
  const target = splitTarget(url);
  if (target === null) return BAD_REQUEST;
  const path = normalizePath(target.uri);
  if (path === null) return BAD_REQUEST;

  // Headers: their size and number, repeats, Host (the request line's host, when
  // absolute, wins over the header).
  if (headSizeStatus(lineLength, head.rawHeaders, headers.headerBytes) !== null) return BAD_REQUEST;
  if (tooManyHeaderLines(head.rawHeaders)) return BAD_REQUEST;
  if (headers.hostCount > 1 || headers.repeatedUnique) return BAD_REQUEST;
  let host: string | null = null;
  const rawHost = target.host ?? headers.host;
  if (rawHost !== undefined) {
    host = normalizeHost(rawHost);
    if (host === null) return BAD_REQUEST;
  }
  const http11 = head.httpVersionMajor > 1 || (head.httpVersionMajor === 1 && head.httpVersionMinor >= 1);
  if (headers.hostCount === 0 && http11) return BAD_REQUEST;
  if (headers.transferEncoding !== undefined) {
    const status = transferEncodingStatus(headers.transferEncoding, http11);
    const length = headers.contentLength !== undefined;
    if (status === 400) return length ? BAD_CODING : BAD_REQUEST;
    if (status === 501) return length ? NOT_IMPLEMENTED : NOT_IMPLEMENTED_NO_LENGTH;
  }
  if (method === 'TRACE' || method === 'CONNECT') return NOT_ALLOWED;

  // Server choice: an unknown host (or none, in HTTP/1.0) lands in the default server.
  if (host === null) return DROP;
  const match = matcher.match(host, path);
  if (match.kind === 'unknownHost') return DROP;

  // Location chosen: the body size limit applies before anything the location does.
  const { contentLength } = headers;
  if (contentLength !== undefined && options.maxBodyBytes > 0 && Number(contentLength) > options.maxBodyBytes)
    return TOO_LARGE;
  if (match.kind === 'redirect') {
    const query = queryOf(target.uri);
    return {
      action: 'respond',
      status: 301,
      host,
      location: query === '' ? match.location : `${match.location}?${query}`,
    };
  }
  if (match.kind === 'notFound') return NOT_FOUND;

  const { route } = match;
  // nginx 1.22's $http_* variable is the first header of that name.
  if (route.apiKey !== null && !apiKeyMatches(headers.apiKey, route.apiKey)) return FORBIDDEN;
  return { action: 'forward', route, host, uri: target.uri };
}
