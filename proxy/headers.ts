import { headerValues } from './decide.js';

// The header lists each side gets, as nginx builds them with the rendered config.

/**
 * Request headers nginx never passes on as they came: those the config sets itself
 * (Host, Connection, Upgrade), those nginx blanks by default (Keep-Alive, TE, Expect),
 * and the body framing, which nginx and Node both write for the body they send.
 */
const REPLACED_REQUEST_HEADERS = new Set([
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
const VALID_HEADER_NAME = /^[A-Za-z0-9-]+$/;

/** The headers for the pod, as a flat [name, value, ...] list in the client's order. */
export function upstreamRequestHeaders(rawHeaders: readonly string[], host: string): string[] {
  const out: string[] = ['Host', host];
  const connection = headerValues(rawHeaders, 'connection')[0];
  out.push('Connection', connection === undefined || connection === '' ? 'close' : connection);
  const upgrade = headerValues(rawHeaders, 'upgrade')[0];
  // proxy_set_header leaves out a header whose value is empty.
  if (upgrade !== undefined && upgrade !== '') out.push('Upgrade', upgrade);
  const length = headerValues(rawHeaders, 'content-length')[0];
  if (length !== undefined) out.push('Content-Length', length);
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (!VALID_HEADER_NAME.test(name) || REPLACED_REQUEST_HEADERS.has(name.toLowerCase())) continue;
    out.push(name, rawHeaders[i + 1] as string);
  }
  return out;
}

/**
 * Response headers nginx does not pass to the client: hop-by-hop ones (it frames the
 * response itself) and those proxy_hide_header hides by default.
 */
const HIDDEN_RESPONSE_HEADERS = new Set([
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
    if (HIDDEN_RESPONSE_HEADERS.has(name.toLowerCase())) continue;
    out.push(name, rawHeaders[i + 1] as string);
  }
  return out;
}

/** Whether the request carries a body (nginx and Node agree: a length or chunked framing). */
export function requestHasBody(rawHeaders: readonly string[]): boolean {
  const length = headerValues(rawHeaders, 'content-length')[0];
  if (length !== undefined) return Number(length) > 0;
  return headerValues(rawHeaders, 'transfer-encoding').length > 0;
}
