import { timingSafeEqual } from 'node:crypto';
import type { Route } from '../src/core/route-table.js';
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
}

export interface DecideOptions {
  /** nginx's client_max_body_size (1m by default). */
  maxBodyBytes: number;
}

export type Decision =
  /** Close without a response (nginx `return 444` in the default server). */
  | { action: 'drop' }
  | { action: 'respond'; status: number; host?: string; location?: string }
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
const NOT_ALLOWED = { action: 'respond', status: 405 } as const;
const TOO_LARGE = { action: 'respond', status: 413 } as const;
const NOT_FOUND = { action: 'respond', status: 404 } as const;
const FORBIDDEN = { action: 'respond', status: 403 } as const;
const DROP = { action: 'drop' } as const;

export function decide(head: RequestHead, headers: RequestHeaders, matcher: RouteMatcher, options: DecideOptions): Decision {
  // Request line: target and its path.
  const target = splitTarget(head.url ?? '');
  if (target === null) return BAD_REQUEST;
  const path = normalizePath(target.uri);
  if (path === null) return BAD_REQUEST;

  // Headers: Host (the request line's host, when absolute, wins over the header).
  if (headers.hostCount > 1) return BAD_REQUEST;
  let host: string | null = null;
  const rawHost = target.host ?? headers.host;
  if (rawHost !== undefined) {
    host = normalizeHost(rawHost);
    if (host === null) return BAD_REQUEST;
  }
  const http11 = head.httpVersionMajor > 1 || (head.httpVersionMajor === 1 && head.httpVersionMinor >= 1);
  if (headers.hostCount === 0 && http11) return BAD_REQUEST;
  if (head.method === 'TRACE') return NOT_ALLOWED;

  // Server choice: an unknown host (or none, in HTTP/1.0) lands in the default server.
  if (host === null) return DROP;
  const match = matcher.match(host, path);
  if (match.kind === 'unknownHost') return DROP;

  // Location chosen: the body size limit applies before anything the location does.
  const { contentLength } = headers;
  if (contentLength !== undefined && Number(contentLength) > options.maxBodyBytes) return TOO_LARGE;
  if (match.kind === 'redirect') {
    const query = queryOf(target.uri);
    return { action: 'respond', status: 301, host, location: query === '' ? match.location : `${match.location}?${query}` };
  }
  if (match.kind === 'notFound') return NOT_FOUND;

  const { route } = match;
  // nginx 1.22's $http_* variable is the first header of that name.
  if (route.apiKey !== null && !apiKeyMatches(headers.apiKey, route.apiKey)) return FORBIDDEN;
  return { action: 'forward', route, host, uri: target.uri };
}
