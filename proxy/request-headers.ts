// The request headers the router acts on, read in one pass over Node's rawHeaders (names
// as sent, in arrival order). nginx 1.22 uses the first of repeated headers for these.
// Names are compared by length first, so most headers cost one integer comparison:
// this runs on every request.

export interface RequestHeaders {
  /** How many Host headers came (nginx answers 400 to two). */
  hostCount: number;
  host: string | undefined;
  contentLength: string | undefined;
  /** The first Transfer-Encoding header (the body is framed by it). */
  transferEncoding: string | undefined;
  connection: string | undefined;
  upgrade: string | undefined;
  /** The first value of the API-key header. */
  apiKey: string | undefined;
  /**
   * A header nginx takes only once came twice (Transfer-Encoding, Authorization, Expect,
   * Content-Range and the If-* preconditions; Host is counted apart): nginx answers 400.
   */
  repeatedUnique: boolean;
  /** The names' and values' lengths added up: what the head's size is worked out from. */
  headerBytes: number;
}

/** Whether `name` is `lower` in any case (`lower`: lower-case letters and "-"), without allocating. */
function named(name: string, lower: string): boolean {
  if (name.length !== lower.length) return false;
  for (let i = 0; i < name.length; i++) {
    // Setting bit 0x20 lower-cases a letter and keeps "-"; header names hold no byte it would confuse with these.
    if ((name.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * The headers nginx 1.22 takes once (ngx_http_process_unique_header_line, and Host and
 * Content-Length); a second one is 400. scanRequestHeaders() checks them on every request
 * (Content-Length: Node's parser refuses a second one first); client-error.ts on heads
 * Node refuses before the router sees them.
 */
export const NGINX_UNIQUE_HEADERS: readonly string[] = [
  'host',
  'content-length',
  'transfer-encoding',
  'authorization',
  'expect',
  'content-range',
  'if-match',
  'if-none-match',
  'if-range',
  'if-modified-since',
  'if-unmodified-since',
];

// The unique headers but Host and Content-Length, by bit (the switch below must know them all).
const TRANSFER_ENCODING = 1;
const EXPECT = 2;
const AUTHORIZATION = 4;
const CONTENT_RANGE = 8;
const IF_MATCH = 16;
const IF_RANGE = 32;
const IF_NONE_MATCH = 64;
const IF_MODIFIED_SINCE = 128;
const IF_UNMODIFIED_SINCE = 256;

/** `apiKeyHeader` in lower case. */
export function scanRequestHeaders(rawHeaders: readonly string[], apiKeyHeader: string): RequestHeaders {
  const found: RequestHeaders = {
    hostCount: 0,
    host: undefined,
    contentLength: undefined,
    transferEncoding: undefined,
    connection: undefined,
    upgrade: undefined,
    apiKey: undefined,
    repeatedUnique: false,
    headerBytes: 0,
  };
  let unique = 0;
  let bytes = 0;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const value = rawHeaders[i + 1] as string;
    bytes += name.length + value.length;
    let bit = 0;
    switch (name.length) {
      case 4:
        if (named(name, 'host') && found.hostCount++ === 0) found.host = value;
        break;
      case 6:
        if (named(name, 'expect')) bit = EXPECT;
        break;
      case 7:
        if (found.upgrade === undefined && named(name, 'upgrade')) found.upgrade = value;
        break;
      case 8:
        if (named(name, 'if-match')) bit = IF_MATCH;
        else if (named(name, 'if-range')) bit = IF_RANGE;
        break;
      case 10:
        if (found.connection === undefined && named(name, 'connection')) found.connection = value;
        break;
      case 13:
        if (named(name, 'authorization')) bit = AUTHORIZATION;
        else if (named(name, 'content-range')) bit = CONTENT_RANGE;
        else if (named(name, 'if-none-match')) bit = IF_NONE_MATCH;
        break;
      case 14:
        if (found.contentLength === undefined && named(name, 'content-length')) found.contentLength = value;
        break;
      case 17:
        if (named(name, 'transfer-encoding')) {
          bit = TRANSFER_ENCODING;
          found.transferEncoding ??= value;
        } else if (named(name, 'if-modified-since')) bit = IF_MODIFIED_SINCE;
        break;
      case 19:
        if (named(name, 'if-unmodified-since')) bit = IF_UNMODIFIED_SINCE;
        break;
    }
    if (bit !== 0) {
      if ((unique & bit) !== 0) found.repeatedUnique = true;
      unique |= bit;
    }
    // Checked apart: the API-key header could have any of the names above.
    if (found.apiKey === undefined && named(name, apiKeyHeader)) found.apiKey = value;
  }
  found.headerBytes = bytes;
  return found;
}

/** Whether the request carries a body (nginx and Node agree: a length or chunked framing). */
export function requestHasBody(headers: RequestHeaders): boolean {
  if (headers.contentLength !== undefined) return Number(headers.contentLength) > 0;
  return headers.transferEncoding !== undefined;
}
