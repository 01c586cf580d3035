import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import type { PeerGroup } from './balancer.js';
import { errorPage } from './error-page.js';
import { clientResponseHeaders, requestHasBody, upstreamRequestHeaders } from './headers.js';
import type { PodProxy } from './http-proxy.js';
import type { ProxyLogger } from './logger.js';
import { ReplayableBody } from './request-body.js';
import { UnsendableHead, type UpstreamRequest } from './upstream-head.js';

// One request through to a pod: peer choice, retries as nginx's proxy_next_upstream
// (error timeout) allows them, and the response streamed back. Each try goes through
// http-proxy-3 (http-proxy.ts).

export interface ForwardSettings {
  pods: PodProxy;
  timeoutMs: number;
  maxBodyBytes: number;
  logger: ProxyLogger;
}

export interface ForwardTarget {
  host: string;
  uri: string;
  group: PeerGroup;
}

export type Failure = 'error' | 'timeout';

/** nginx's final status for the last failure: 504 when that was a timeout. */
export function failureStatus(failure: Failure): number {
  return failure === 'timeout' ? 504 : 502;
}

/** How many times a request may go again to the same pod because a kept-alive socket had gone stale. */
const STALE_SOCKET_RETRIES = 3;

class UpstreamTimeout extends Error {
  readonly code = 'UPSTREAM_TIMEOUT';
}

function isStaleSocketError(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'ECONNABORTED';
}

export function sendErrorPage(res: ServerResponse, status: number, extraHeaders: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = errorPage(status);
  res.writeHead(status, { 'Content-Type': 'text/html', 'Content-Length': Buffer.byteLength(body), ...extraHeaders });
  res.end(body);
}

export function forwardRequest(req: IncomingMessage, res: ServerResponse, target: ForwardTarget, settings: ForwardSettings): void {
  const method = req.method ?? 'GET';
  const hasBody = requestHasBody(req.rawHeaders);
  const request: UpstreamRequest = { method, uri: target.uri, headers: upstreamRequestHeaders(req.rawHeaders, target.host), hasBody };
  const selection = target.group.begin();
  let current: ClientRequest | null = null;
  let finished = false;

  const body = new ReplayableBody(req, hasBody, settings.maxBodyBytes, () => {
    finished = true;
    current?.destroy();
    res.shouldKeepAlive = false;
    sendErrorPage(res, 413);
  });

  const giveUp = (failure: Failure): void => {
    finished = true;
    // The rest of the body will not be read: the connection cannot be reused.
    if (!req.complete) res.shouldKeepAlive = false;
    sendErrorPage(res, failureStatus(failure));
  };

  // The client went away: nothing more to do upstream. Registered before http-proxy-3's
  // own listeners, so that an error it reports after this is known to be the client's.
  const clientGone = (): void => {
    finished = true;
    current?.destroy();
  };
  res.on('close', () => {
    if (!res.writableFinished) clientGone();
  });
  req.on('error', clientGone);

  const tryNext = (): void => {
    if (finished) return;
    const peer = selection.next();
    // nginx: "no live upstreams", 502 whatever the failure before it was.
    if (peer === null) giveUp('error');
    else attempt(peer.index, peer.backend.ip, peer.backend.port, 0);
  };

  const attempt = (index: number, ip: string, port: number, staleRetries: number): void => {
    let proxyReq: ClientRequest | null = null;
    let connected = false;
    let responded = false;
    let over = false;
    // This attempt's copy of the body; each attempt gets its own from the kept chunks.
    const feed = new PassThrough();

    const release = settings.pods.web(req, res, { ip, port }, request, feed, {
      onRequest(preq, socket) {
        proxyReq = preq;
        current = preq;
        if (finished) {
          preq.destroy();
          return;
        }
        if (preq.reusedSocket || !socket.connecting) connected = true;
        else socket.once('connect', () => (connected = true));
        preq.setTimeout(settings.timeoutMs, () => preq.destroy(new UpstreamTimeout('upstream timed out')));
        // Only now: the head is written, so nothing the body does can race it.
        body.attach(feed);
      },

      onResponse(pres) {
        responded = true;
        selection.succeeded(index);
        body.release();
        if (finished || res.destroyed) {
          pres.destroy();
          return;
        }
        res.writeHead(pres.statusCode ?? 502, pres.statusMessage, clientResponseHeaders(pres.rawHeaders));
        pres.on('error', () => res.destroy());
        pres.on('close', () => {
          // Cut short by the pod (reset, timeout): the client sees a cut response, as with nginx.
          if (!pres.complete) res.destroy();
        });
        pres.pipe(res);
      },

      onError(err) {
        if (responded || finished || over) return;
        over = true;
        release();
        feed.destroy();
        if (err instanceof UnsendableHead) {
          // The client's request, not the pod, is at fault: no other pod would take it either.
          settings.logger.warn({ code: err.code, reason: err.message }, 'request cannot be sent upstream');
          giveUp('error');
          return;
        }
        if (proxyReq?.reusedSocket === true && isStaleSocketError(err) && staleRetries < STALE_SOCKET_RETRIES) {
          // The pod closed an idle kept-alive connection as we reused it: not the pod's fault.
          attempt(index, ip, port, staleRetries + 1);
          return;
        }
        const failure: Failure = err instanceof UpstreamTimeout ? 'timeout' : 'error';
        settings.logger.warn({ pod: target.group.backends[index]?.pod, ip, port, failure, code: err.code }, 'upstream failed');
        if (selection.failed(index, method, connected) === 'stop') giveUp(failure);
        else tryNext();
      },
    });
  };

  tryNext();
}
