import type { ClientRequest, OutgoingHttpHeaders } from 'node:http';

// The request line and headers a pod receives, written exactly as nginx would send them.
//
// http-proxy-3 builds the upstream request from an object of headers, and Node's
// ClientRequest keys that object by lower-cased name: "X-Multi: a" and "x-multi: b" would
// reach the pod as one name, and repeats of a name would be grouped. nginx passes each
// header line as the client sent it. Node writes such a list only from an array of
// headers, through the same routine http.request uses for one; the router calls it while
// http-proxy-3 hands over the request it created, before anything was written to it.

export interface UpstreamRequest {
  method: string;
  /** The URI as the client sent it: nginx's `proxy_pass http://ip:port;` passes it unchanged. */
  uri: string;
  /** Flat [name, value, ...] list, in the order the pod must receive it. */
  headers: readonly string[];
  hasBody: boolean;
}

/**
 * Node would not send this request's head (a Trailer header on a request it does not
 * chunk, for one). Nothing to do with the pod, which must not be marked failed for it.
 */
export class UnsendableHead extends Error {
  readonly code = 'UNSENDABLE_HEAD';
}

/** The part of ClientRequest that renders its head (what http.request calls for array headers). */
interface HeadRenderer {
  _storeHeader(firstLine: string, headers: readonly string[]): void;
}

/**
 * Writes the head of `proxyReq` as `request` says. Returns false (and destroys the
 * request) when that is no longer possible or Node refuses a header.
 */
export function writeUpstreamHead(proxyReq: ClientRequest, request: UpstreamRequest): boolean {
  if (proxyReq.headersSent) {
    proxyReq.destroy(new UnsendableHead('upstream request head was written before the router could set it'));
    return false;
  }
  // nginx sends a request without a body with no framing at all; Node would frame an
  // empty POST as chunked.
  if (!request.hasBody) proxyReq.useChunkedEncodingByDefault = false;
  // http-proxy-3 joins the URI with the target's path through WHATWG URL rules, which
  // drop an empty query ("/a?"); the pod gets the URI the client sent.
  proxyReq.path = request.uri;
  try {
    (proxyReq as unknown as HeadRenderer)._storeHeader(`${request.method} ${request.uri} HTTP/1.1\r\n`, request.headers);
  } catch (err) {
    proxyReq.destroy(new UnsendableHead((err as Error).message));
    return false;
  }
  return true;
}

/**
 * The same headers in the form http-proxy-3 reads from a request (lower-cased names, as
 * Node's IncomingMessage.headers): it looks up `upgrade`, `connection`, `expect` there.
 */
export function headerObject(flat: readonly string[]): OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = (flat[i] as string).toLowerCase();
    const value = flat[i + 1] as string;
    const seen = out[name];
    if (seen === undefined) out[name] = value;
    else if (Array.isArray(seen)) seen.push(value);
    else out[name] = [seen, value];
  }
  return out;
}
