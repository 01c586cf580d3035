import http from 'node:http';
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import { createProxyServer, type ProxyServer } from 'http-proxy-3';
import { clientSocketView, type ClientSocketView } from './client-socket-view.js';
import { listenersAddedBy } from './listener-scope.js';
import type { ProxyLogger } from './logger.js';
import { viewOf } from './object-view.js';
import { headerObject, UnsendableHead, writeUpstreamHead, type UpstreamRequest } from './upstream-head.js';

// The one way requests reach pods: one http-proxy-3 instance per data plane, a request
// or upgrade to one pod per call. The caller (forward.ts, tunnel.ts) chooses pods and
// retries; this module turns http-proxy-3's shared events back into calls on the
// attempt they belong to.

export interface PodAddress {
  ip: string;
  port: number;
}

export interface WebAttempt {
  /** The request to the pod has a socket and its head is written; the body may follow. */
  onRequest(proxyReq: ClientRequest, socket: Socket): void;
  onResponse(proxyRes: IncomingMessage): void;
  /** The request to the pod failed before its response (or could not be made). */
  onError(err: NodeJS.ErrnoException): void;
}

export interface UpgradeAttempt {
  /** The request to the pod exists and its head is written. */
  onRequest(proxyReq: ClientRequest): void;
  /** The pod switched protocols; the attempt writes the 101 head to the client. */
  onUpgrade(proxyRes: IncomingMessage, upstream: Socket): void;
  /** http-proxy-3 piped the tunnel (and reset both sockets' timeouts). */
  onTunnelOpen(upstream: Socket): void;
  /** The pod answered without switching; the attempt answers the client. */
  onResponse(proxyRes: IncomingMessage): void;
  onError(err: NodeJS.ErrnoException): void;
}

/** Below the 5 s keep-alive timeout of Node servers and most others, so we close idle sockets first. */
const UPSTREAM_IDLE_MS = 4_000;

const NO_HEAD = Buffer.alloc(0);

function targetOf(pod: PodAddress): { host: string; port: number; protocol: string } {
  // No pathname: http-proxy-3 then prefixes nothing to the request's own path.
  return { host: pod.ip, port: pod.port, protocol: 'http:' };
}

/** The client's request as http-proxy-3 must see it: the URI and headers nginx sends on. */
function requestView(req: IncomingMessage, request: UpstreamRequest): IncomingMessage {
  const headers = headerObject(request.headers);
  return viewOf(req, (key) => {
    if (key === 'url') return { value: request.uri };
    if (key === 'headers') return { value: headers };
    return undefined;
  });
}

interface WebEntry {
  request: UpstreamRequest;
  attempt: WebAttempt;
}

interface UpgradeEntry {
  request: UpstreamRequest;
  attempt: UpgradeAttempt;
  client: ClientSocketView;
}

export class PodProxy {
  /** Keep-alive connections to pods, shared by every plain request. */
  private readonly agent = new http.Agent({ keepAlive: true, timeout: UPSTREAM_IDLE_MS, scheduling: 'lifo' });
  private readonly proxy: ProxyServer;
  /** Keyed by the request view handed to http-proxy-3, which its events carry back. */
  private readonly webAttempts = new WeakMap<object, WebEntry>();
  private readonly upgradeAttempts = new WeakMap<object, UpgradeEntry>();
  private readonly tunnels = new WeakMap<Socket, UpgradeAttempt>();

  constructor(private readonly logger: ProxyLogger) {
    this.proxy = createProxyServer({
      // The router writes the client's response itself (nginx's header list, not http-proxy's).
      selfHandleResponse: true,
      // Use the request's path as given rather than re-parsing it as a WHATWG URL,
      // which would resolve "/a/../b" and re-encode bytes the pod must see as sent.
      toProxy: true,
      prependPath: false,
      xfwd: false,
    });
    this.dropUpgradeCheck();
    this.proxy.on('proxyReq', (proxyReq, req, _res, _options, socket) => {
      const entry = this.webAttempts.get(req);
      if (entry === undefined) return;
      if (writeUpstreamHead(proxyReq, entry.request)) entry.attempt.onRequest(proxyReq, socket);
    });
    this.proxy.on('proxyRes', (proxyRes, req) => this.webAttempts.get(req)?.attempt.onResponse(proxyRes));
    this.proxy.on('proxyReqWs', (proxyReq, req) => {
      const entry = this.upgradeAttempts.get(req);
      if (entry !== undefined) this.takeUpgradeAnswers(proxyReq, entry);
    });
    this.proxy.on('open', (upstream) => this.tunnels.get(upstream)?.onTunnelOpen(upstream));
    // Errors with an attempt reach its onError; these are the client socket's own, and
    // resets of a client that already left. Listening keeps http-proxy-3 from throwing them.
    this.proxy.on('error', (err) => logger.debug({ code: (err as NodeJS.ErrnoException).code }, 'client connection error during proxying'));
    this.proxy.on('econnreset', (err) => logger.debug({ code: (err as NodeJS.ErrnoException).code }, 'client left during proxying'));
  }

  /**
   * One request to `pod`, its body read from `body`. Returns a function that removes what
   * this call attached to the client's request and response, for an attempt given up.
   */
  web(req: IncomingMessage, res: ServerResponse, pod: PodAddress, request: UpstreamRequest, body: Readable, attempt: WebAttempt): () => void {
    const view = requestView(req, request);
    this.webAttempts.set(view, { request, attempt });
    let releaseRequest = (): void => {};
    let releaseResponse = (): void => {};
    try {
      releaseRequest = listenersAddedBy(req, ['error'], () => {
        releaseResponse = listenersAddedBy(res, ['close'], () => {
          this.proxy.web(view, res, { target: targetOf(pod), agent: this.agent, buffer: body }, (err) => attempt.onError(err as NodeJS.ErrnoException));
        });
      });
    } catch (err) {
      // Node refused to build the request (a header it will not send).
      process.nextTick(() => attempt.onError(new UnsendableHead((err as Error).message)));
    }
    return () => {
      releaseRequest();
      releaseResponse();
      this.webAttempts.delete(view);
    };
  }

  /**
   * One upgrade request to `pod`. `head` (bytes the client sent after its request) goes
   * back into the client socket, for the tunnel to carry: pass it to the first attempt only.
   */
  ws(req: IncomingMessage, client: Duplex, head: Buffer, pod: PodAddress, request: UpstreamRequest, attempt: UpgradeAttempt): () => void {
    const view = requestView(req, request);
    const clientView = clientSocketView(client);
    this.upgradeAttempts.set(view, { request, attempt, client: clientView });
    // http-proxy-3 keeps one 'close' listener per call on the client socket (its socket
    // count needs it); the error listeners of an attempt given up are removed.
    if (client.getMaxListeners() > 0) client.setMaxListeners(client.getMaxListeners() + 1);
    let releaseErrors = (): void => {};
    try {
      releaseErrors = listenersAddedBy(client, ['error'], () => {
        // A new connection per upgrade: the socket becomes the tunnel, never back in a pool.
        this.proxy.ws(view, clientView.socket, head.length > 0 ? head : NO_HEAD, { target: targetOf(pod), agent: false }, (err) =>
          attempt.onError(err as NodeJS.ErrnoException),
        );
      });
    } catch (err) {
      process.nextTick(() => attempt.onError(new UnsendableHead((err as Error).message)));
    }
    return () => {
      releaseErrors();
      this.upgradeAttempts.delete(view);
    };
  }

  close(): void {
    this.agent.destroy();
  }

  /**
   * Registered before http-proxy-3's own listeners on the new request, so the router
   * answers the client first and http-proxy-3's own rendering is dropped (see
   * client-socket-view.ts).
   */
  private takeUpgradeAnswers(proxyReq: ClientRequest, entry: UpgradeEntry): void {
    if (!writeUpstreamHead(proxyReq, entry.request)) return;
    proxyReq.on('upgrade', (proxyRes: IncomingMessage, upstream: Socket) => {
      this.tunnels.set(upstream, entry.attempt);
      entry.attempt.onUpgrade(proxyRes, upstream);
      entry.client.headWritten();
    });
    proxyReq.on('response', (proxyRes: IncomingMessage) => {
      entry.client.handOver();
      entry.attempt.onResponse(proxyRes);
    });
    entry.attempt.onRequest(proxyReq);
  }

  /**
   * http-proxy-3 destroys an upgrade that is not a GET for "websocket"; nginx passes any
   * upgrade on to the pod. The check is one of its passes, dropped by name; a version
   * that renames it fails here, at start, rather than refusing upgrades quietly.
   */
  private dropUpgradeCheck(): void {
    const passes = (this.proxy as unknown as { wsPasses: { name: string }[] }).wsPasses;
    const at = passes.findIndex((pass) => pass.name === 'checkMethodAndHeader');
    if (at < 0) throw new Error('http-proxy-3: the WebSocket method check pass was not found');
    passes.splice(at, 1);
  }
}
