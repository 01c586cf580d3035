import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { ErrorCode } from '../src/core/error-codes.js';
import type { PodEndpoint } from '../src/core/route-table.js';
import type { PeerGroup, PeerSelection } from './balancer.js';
import { errorPage, reasonPhrase } from './error-page.js';
import { lastAnswer } from './lingering-close.js';
import { clientResponseHeaders } from './headers.js';
import type { PodProxy, WebAttempt } from './http-proxy.js';
import type { ProxyLogger } from './logger.js';
import { ReplayableBody, type BodyLimits } from './request-body.js';
import type { ProxyCounters } from './stats.js';
import { UnsendableHead, type UpstreamRequest } from './upstream-head.js';

// One request through to a pod: peer choice, retries as nginx's proxy_next_upstream
// (error timeout) allows them, and the response streamed back. Each try goes through
// the proxy library (http-proxy.ts). This runs for every request: one object per
// request and one per try, no stream in between.

export interface ForwardSettings {
  /** Also times requests out (see http-proxy.ts). */
  pods: PodProxy;
  body: BodyLimits;
  logger: ProxyLogger;
  stats: ProxyCounters;
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
  readonly code: ErrorCode = 'KR_UPSTREAM_TIMEOUT';
}

function isStaleSocketError(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'ECONNABORTED';
}

function corkForThisTick(socket: Socket | null): void {
  if (socket === null) return;
  socket.cork();
  process.nextTick(() => socket.uncork());
}

export function sendErrorPage(
  res: ServerResponse,
  status: number,
  stats: ProxyCounters,
  extraHeaders: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  stats.answered(status);
  const body = errorPage(status);
  res.writeHead(status, reasonPhrase(status), {
    'Content-Type': 'text/html',
    'Content-Length': Buffer.byteLength(body),
    ...extraHeaders,
  });
  res.end(body);
}

export function forwardRequest(
  req: IncomingMessage,
  res: ServerResponse,
  target: ForwardTarget,
  request: UpstreamRequest,
  settings: ForwardSettings,
): void {
  new Forwarding(req, res, target, request, settings).tryNext();
}

class Forwarding {
  private readonly selection: PeerSelection;
  private readonly body: ReplayableBody | null;
  private current: Try | null = null;
  private finished = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly target: ForwardTarget,
    readonly request: UpstreamRequest,
    readonly settings: ForwardSettings,
  ) {
    const { group } = target;
    // The client's address only where it chooses the pod (affinity).
    this.selection = group.begin(group.hashesClients ? req.socket.remoteAddress : undefined);
    this.body = request.hasBody ? new ReplayableBody(req, settings.body, () => this.bodyTooLarge()) : null;
    // The client went away: nothing more to do upstream.
    res.on('close', () => {
      if (!res.writableFinished) this.stop();
    });
  }

  tryNext(): void {
    if (this.finished) return;
    const peer = this.selection.next();
    // nginx: "no live upstreams", 502 whatever the failure before it was.
    if (peer === null) this.giveUp('error');
    else this.attempt(peer.index, peer.backend, 0);
  }

  private attempt(index: number, pod: PodEndpoint, staleRetries: number): void {
    const attempt = new Try(this, index, pod, staleRetries);
    this.current = attempt;
    this.settings.pods.web(pod, attempt, this.req.socket);
  }

  /** The try's request has its head written. */
  started(attempt: Try, proxyReq: ClientRequest): void {
    if (this.finished) {
      proxyReq.destroy();
      return;
    }
    const socket = proxyReq.socket as Socket;
    if (proxyReq.reusedSocket || !socket.connecting) attempt.connected = true;
    else socket.once('connect', () => (attempt.connected = true));
    // The pod's socket times out after the upstream timeout without traffic (its agent's, see http-proxy.ts).
    proxyReq.once('timeout', () => proxyReq.destroy(new UpstreamTimeout('upstream timed out')));
    // Only now: the head is written, so nothing the body does can race it.
    if (this.body === null) {
      proxyReq.end();
    } else {
      // The head and the body received so far leave in one write.
      corkForThisTick(socket);
      this.body.attach(proxyReq);
    }
  }

  answered(attempt: Try, pres: IncomingMessage): void {
    this.selection.succeeded(attempt.index);
    this.body?.release();
    const { res } = this;
    if (this.finished || res.destroyed) {
      pres.destroy();
      return;
    }
    const status = pres.statusCode ?? 502;
    this.settings.stats.answered(status);
    // The head and what of the body came with it leave in one write, not one each: the
    // pod's first bytes usually arrive with its head, in this same tick.
    corkForThisTick(res.socket);
    res.writeHead(status, pres.statusMessage, clientResponseHeaders(pres.rawHeaders));
    // What pipe() does, with the few listeners this needs (pipe adds and removes eight).
    pres.on('data', (chunk: Buffer) => {
      if (res.write(chunk)) return;
      pres.pause();
      res.once('drain', () => pres.resume());
    });
    pres.on('end', () => res.end());
    pres.on('close', () => {
      // Cut short by the pod (reset, timeout): the client sees a cut response, as with nginx.
      if (!pres.complete) res.destroy();
    });
  }

  failed(attempt: Try, err: NodeJS.ErrnoException): void {
    if (this.finished) return;
    const { settings } = this;
    if (err instanceof UnsendableHead) {
      // The client's request, not the pod, is at fault: no other pod would take it either.
      settings.logger.warn({ code: err.code, reason: err.message }, 'request cannot be sent upstream');
      this.giveUp('error');
      return;
    }
    const { index, pod } = attempt;
    // A body too big to keep went (in part) to this pod only: no other try can send it whole.
    const resendable = this.body === null || this.body.replayable;
    if (
      resendable &&
      attempt.proxyReq?.reusedSocket === true &&
      isStaleSocketError(err) &&
      attempt.staleRetries < STALE_SOCKET_RETRIES
    ) {
      // The pod closed an idle kept-alive connection as we reused it: not the pod's fault.
      this.attempt(index, pod, attempt.staleRetries + 1);
      return;
    }
    settings.stats.upstreamFailed();
    const failure: Failure = err instanceof UpstreamTimeout ? 'timeout' : 'error';
    settings.logger.warn({ pod: pod.pod, ip: pod.ip, port: pod.port, failure, code: err.code }, 'upstream failed');
    if (this.selection.failed(index, this.request.method, attempt.connected) === 'stop' || !resendable)
      this.giveUp(failure);
    else this.tryNext();
  }

  private giveUp(failure: Failure): void {
    this.finished = true;
    // The rest of the body will not be sent on: it is read and dropped, then the connection closes.
    if (!this.req.complete) lastAnswer(this.req, this.res);
    sendErrorPage(this.res, failureStatus(failure), this.settings.stats);
  }

  private bodyTooLarge(): void {
    this.stop();
    lastAnswer(this.req, this.res);
    sendErrorPage(this.res, 413, this.settings.stats);
  }

  private stop(): void {
    this.finished = true;
    this.current?.proxyReq?.destroy();
  }
}

/** One try of a request on one pod; the proxy library hands it back with each event. */
class Try implements WebAttempt {
  proxyReq: ClientRequest | null = null;
  connected = false;
  private over = false;

  constructor(
    private readonly forwarding: Forwarding,
    readonly index: number,
    readonly pod: PodEndpoint,
    readonly staleRetries: number,
  ) {}

  get request(): UpstreamRequest {
    return this.forwarding.request;
  }

  onRequest(proxyReq: ClientRequest): void {
    this.proxyReq = proxyReq;
    this.forwarding.started(this, proxyReq);
  }

  onResponse(proxyRes: IncomingMessage): void {
    if (this.over) {
      proxyRes.destroy();
      return;
    }
    this.over = true;
    this.forwarding.answered(this, proxyRes);
  }

  onError(err: NodeJS.ErrnoException): void {
    // Once answered, a failure is the response's (handled where it is piped); and each
    // try fails once, however many errors its request emits.
    if (this.over) return;
    this.over = true;
    this.forwarding.failed(this, err);
  }
}
