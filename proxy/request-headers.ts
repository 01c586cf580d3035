// The request headers the router acts on, read in one pass over Node's rawHeaders (names
// as sent, in arrival order). nginx 1.22 uses the first of repeated headers for these.
// Names are compared by length first, so most headers cost one integer comparison:
// this runs on every request.

export interface RequestHeaders {
  /** How many Host headers came (nginx answers 400 to two). */
  hostCount: number;
  host: string | undefined;
  contentLength: string | undefined;
  /** A Transfer-Encoding header came (the body is framed by it). */
  transferEncoding: boolean;
  connection: string | undefined;
  upgrade: string | undefined;
  /** The first value of the API-key header. */
  apiKey: string | undefined;
}

function named(name: string, lower: string): boolean {
  return name.length === lower.length && (name === lower || name.toLowerCase() === lower);
}

/** `apiKeyHeader` in lower case. */
export function scanRequestHeaders(rawHeaders: readonly string[], apiKeyHeader: string): RequestHeaders {
  const found: RequestHeaders = {
    hostCount: 0,
    host: undefined,
    contentLength: undefined,
    transferEncoding: false,
    connection: undefined,
    upgrade: undefined,
    apiKey: undefined,
  };
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const value = rawHeaders[i + 1] as string;
    switch (name.length) {
      case 4:
        if (named(name, 'host') && found.hostCount++ === 0) found.host = value;
        break;
      case 7:
        if (found.upgrade === undefined && named(name, 'upgrade')) found.upgrade = value;
        break;
      case 10:
        if (found.connection === undefined && named(name, 'connection')) found.connection = value;
        break;
      case 14:
        if (found.contentLength === undefined && named(name, 'content-length')) found.contentLength = value;
        break;
      case 17:
        if (named(name, 'transfer-encoding')) found.transferEncoding = true;
        break;
    }
    // Checked apart: the API-key header could have any of the names above.
    if (found.apiKey === undefined && named(name, apiKeyHeader)) found.apiKey = value;
  }
  return found;
}

/** Whether the request carries a body (nginx and Node agree: a length or chunked framing). */
export function requestHasBody(headers: RequestHeaders): boolean {
  if (headers.contentLength !== undefined) return Number(headers.contentLength) > 0;
  return headers.transferEncoding;
}
