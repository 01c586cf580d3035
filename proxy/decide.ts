import { timingSafeEqual } from 'node:crypto';
import type { Route } from '../src/core/route-table.js';
import { normalizeHost } from './host.js';
import type { RouteMatcher } from './matcher.js';
import { normalizePath, splitTarget } from './uri.js';

// What nginx, on the rendered config, does with a request before it contacts a pod,
// decided from the request head alone. The checks run in nginx's order (request line,
// headers, server choice, location, then the location's `if`), because a request that
// breaks two rules must get the answer nginx gives.

export interface RequestHead {
  method: string;
  /** The request-target exactly as sent. */
  target: string;
  httpVersionMajor: number;
  httpVersionMinor: number;
  /** Node's rawHeaders: name, value, name, value... in arrival order, names as sent. */
  rawHeaders: readonly string[];
}

export interface DecideOptions {
  apiKeyHeader: string;
  /** nginx's client_max_body_size (1m by default). */
  maxBodyBytes: number;
}

export type Decision =
  /** Close without a response (nginx `return 444` in the default server). */
  | { action: 'drop' }
  | { action: 'respond'; status: number; host?: string; location?: string }
  | { action: 'forward'; route: Route; host: string; uri: string };

/** Every value of header `name` (any case), in arrival order. */
export function headerValues(rawHeaders: readonly string[], name: string): string[] {
  const wanted = name.toLowerCase();
  const values: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] as string).toLowerCase() === wanted) values.push(rawHeaders[i + 1] as string);
  }
  return values;
}

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

export function decide(head: RequestHead, matcher: RouteMatcher, options: DecideOptions): Decision {
  const bad = { action: 'respond', status: 400 } as const;

  // Request line: target and its path.
  const target = splitTarget(head.target);
  if (target === null) return bad;
  const path = normalizePath(target.uri);
  if (path === null) return bad;

  // Headers: Host (the request line's host, when absolute, wins over the header).
  const hostHeaders = headerValues(head.rawHeaders, 'host');
  if (hostHeaders.length > 1) return bad;
  let host: string | null = null;
  const rawHost = target.host ?? hostHeaders[0];
  if (rawHost !== undefined) {
    host = normalizeHost(rawHost);
    if (host === null) return bad;
  }
  const http11 = head.httpVersionMajor > 1 || (head.httpVersionMajor === 1 && head.httpVersionMinor >= 1);
  if (hostHeaders.length === 0 && http11) return bad;
  if (head.method === 'TRACE') return { action: 'respond', status: 405 };

  // Server choice: an unknown host (or none, in HTTP/1.0) lands in the default server.
  if (host === null) return { action: 'drop' };
  const match = matcher.match(host, path);
  if (match.kind === 'unknownHost') return { action: 'drop' };

  // Location chosen: the body size limit applies before anything the location does.
  const contentLength = headerValues(head.rawHeaders, 'content-length')[0];
  if (contentLength !== undefined && Number(contentLength) > options.maxBodyBytes) {
    return { action: 'respond', status: 413 };
  }
  if (match.kind === 'redirect') {
    const query = queryOf(target.uri);
    return { action: 'respond', status: 301, host, location: query === '' ? match.location : `${match.location}?${query}` };
  }
  if (match.kind === 'notFound') return { action: 'respond', status: 404 };

  const { route } = match;
  if (route.apiKey !== null) {
    // nginx 1.22's $http_* variable is the first header of that name.
    const sent = headerValues(head.rawHeaders, options.apiKeyHeader)[0];
    if (!apiKeyMatches(sent, route.apiKey)) return { action: 'respond', status: 403 };
  }
  return { action: 'forward', route, host, uri: target.uri };
}
