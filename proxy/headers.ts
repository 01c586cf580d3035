import type { RequestHeaders } from './request-headers.js';

// The header lists each side gets, as nginx builds them with the rendered config.

/** A set of lower-case header names, tested without lower-casing names of other lengths. */
class NameSet {
  private readonly names: Set<string>;
  private readonly lengths: Set<number>;

  constructor(names: readonly string[]) {
    this.names = new Set(names);
    this.lengths = new Set(names.map((n) => n.length));
  }

  has(name: string): boolean {
    return this.lengths.has(name.length) && this.names.has(name.toLowerCase());
  }
}

/**
 * Request headers nginx never passes on as they came: those the config sets itself
 * (Host, Connection, Upgrade), those nginx blanks by default (Keep-Alive, TE, Expect),
 * and the body framing, which nginx and Node both write for the body they send.
 */
const REPLACED_REQUEST_HEADERS = new NameSet([
  'host',
  'connection',
  'upgrade',
  'keep-alive',
  'te',
  'expect',
  'content-length',
  'transfer-encoding',
]);

/**
 * nginx ignores request headers whose names are not letters, digits and "-"
 * (ignore_invalid_headers on, underscores_in_headers off): they reach no pod.
 */
export function validName(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d)) return false;
  }
  return true;
}

/**
 * The headers for the pod, as a flat [name, value, ...] list in the client's order.
 * `keepalive`: the UPSTREAM_KEEPALIVE config, whose map sends no Connection header
 * (so the pod keeps the connection) but "upgrade" when the client sent an Upgrade;
 * otherwise the documented map: the client's Connection, or "close".
 */
export function upstreamRequestHeaders(
  rawHeaders: readonly string[],
  host: string,
  headers: RequestHeaders,
  keepalive: boolean,
): string[] {
  const out: string[] = ['Host', host];
  const { connection, upgrade, contentLength } = headers;
  // proxy_set_header leaves out a header whose value is empty.
  const upgrading = upgrade !== undefined && upgrade !== '';
  if (!keepalive) out.push('Connection', connection === undefined || connection === '' ? 'close' : connection);
  else if (upgrading) out.push('Connection', 'upgrade');
  if (upgrading) out.push('Upgrade', upgrade);
  if (contentLength !== undefined) out.push('Content-Length', contentLength);
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (!validName(name) || REPLACED_REQUEST_HEADERS.has(name)) continue;
    out.push(name, rawHeaders[i + 1] as string);
  }
  return out;
}

/**
 * Response headers nginx does not pass to the client: hop-by-hop ones (it frames the
 * response itself) and those proxy_hide_header hides by default.
 */
const HIDDEN_RESPONSE_HEADERS = new NameSet([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'date',
  'server',
  'x-pad',
  'x-accel-expires',
  'x-accel-redirect',
  'x-accel-limit-rate',
  'x-accel-buffering',
  'x-accel-charset',
]);

/** The pod's response headers for the client, as a flat [name, value, ...] list. */
export function clientResponseHeaders(rawHeaders: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (HIDDEN_RESPONSE_HEADERS.has(name)) continue;
    out.push(name, rawHeaders[i + 1] as string);
  }
  return out;
}
