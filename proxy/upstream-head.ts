import type { ClientRequest } from 'node:http';
import type { ErrorCode } from '../src/core/error-codes.js';
import { writeRequestHead } from './internals/node-http.js';

// The request line and headers a pod receives, written exactly as nginx would send them.
//
// The proxy libraries build the upstream request from an object of headers, and Node's
// ClientRequest keys that object by lower-cased name: "X-Multi: a" and "x-multi: b" would
// reach the pod as one name, and repeats of a name would be grouped. nginx passes each
// header line as the client sent it. So the router writes the head itself from the list
// (internals/node-http.ts), while the library hands over the request it created, before
// anything was written to it.

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
  readonly code: ErrorCode = 'KR_UNSENDABLE_HEAD';
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
  // A library may join the URI with the target's path (http-proxy-3 through WHATWG URL
  // rules, which drop an empty query "/a?"); the pod gets the URI the client sent.
  proxyReq.path = request.uri;
  try {
    // nginx sends a request without a body with no framing at all; a body without a
    // length goes chunked, whatever the method.
    writeRequestHead(proxyReq, `${request.method} ${request.uri} HTTP/1.1\r\n`, request.headers, request.hasBody);
  } catch (err) {
    proxyReq.destroy(new UnsendableHead((err as Error).message));
    return false;
  }
  return true;
}
