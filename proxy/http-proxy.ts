import http from 'node:http';
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  clientSocketView,
  createLibraryProxy,
  LIBRARY_RESPONSE,
  LibraryRequest,
  type ClientSocketView,
  type ProxyLibrary,
  type ProxyServer,
} from './internals/http-proxy.js';
import { FixedDestinationAgent } from './internals/node-http.js';
import { listenersAddedBy } from './listener-scope.js';
import type { ProxyLogger } from './logger.js';
import { UnsendableHead, writeUpstreamHead, type UpstreamRequest } from './upstream-head.js';

export { HTTP_PROXY, type ProxyLibrary } from './internals/http-proxy.js';

// The one way requests reach pods: one proxy-library instance per data plane, one
// request or upgrade to one pod per call. The caller (forward.ts, tunnel.ts) chooses
// pods and retries; the attempt rides on the request object handed to the library, and
// comes back with every event the library emits about it.

export interface PodAddress {
  ip: string;
  port: number;
}

export interface WebAttempt {
  readonly request: UpstreamRequest;
  /** The request to the pod has a socket and its head is written: send the body now. */
  onRequest(proxyReq: ClientRequest): void;
  onResponse(proxyRes: IncomingMessage): void;
  /** The request to the pod failed before its response (or could not be made). */
  onError(err: NodeJS.ErrnoException): void;
}

export interface UpgradeAttempt {
  readonly request: UpstreamRequest;
  /** The request to the pod exists and its head is written. */
  onRequest(proxyReq: ClientRequest): void;
  /** The pod switched protocols; the attempt writes the 101 head to the client. */
  onUpgrade(proxyRes: IncomingMessage, upstream: Socket): void;
  /** The library piped the tunnel (and reset both sockets' timeouts). */
  onTunnelOpen(upstream: Socket): void;
  /** The pod answered without switching; the attempt answers the client. */
  onResponse(proxyRes: IncomingMessage): void;
  onError(err: NodeJS.ErrnoException): void;
}

const NO_HEAD = Buffer.alloc(0);

interface UpgradeEntry {
  attempt: UpgradeAttempt;
  client: ClientSocketView;
}

/**
 * The connections to one pod, all to its address (whatever options the library passes).
 *
 * Its sockets carry the upstream timeout (the agent's `timeout`) from the start and keep
 * it: a request in flight and a kept connection alike are closed after that long without
 * traffic (nginx's proxy_read_timeout and upstream keepalive_timeout are both 60 s by
 * default). So a request needs no timer of its own, only a listener (forward.ts).
 */
class PodAgent extends FixedDestinationAgent {
  private readonly keepAliveDelay: number;

  constructor(pod: PodAddress, options: http.AgentOptions) {
    super({ host: pod.ip, port: pod.port }, options);
    this.keepAliveDelay = options.keepAliveMsecs ?? 1000;
  }

  /**
   * Node's documented default, without what it has since added: a shorter idle timeout
   * from the pod's Keep-Alive header (nginx ignores it too; a pod that closes an idle
   * connection is seen closing it, and a request that meets the close is sent again).
   */
  override keepSocketAlive(socket: Socket): boolean {
    socket.setKeepAlive(true, this.keepAliveDelay);
    socket.unref();
    return true;
  }
}

/** The key of a pod's agent: one agent, and one pool of kept connections, per address. */
export function podAddressKey(pod: PodAddress): string {
  return `${pod.ip}:${pod.port}`;
}

export class PodProxy {
  /** How each pod's agent treats connections: kept alive when UPSTREAM_KEEPALIVE > 0. */
  private readonly agentOptions: http.AgentOptions;
  /** By "ip:port": a pod keeps its agent, and its idle connections, across table swaps. */
  private agents = new Map<string, PodAgent>();
  private readonly proxy: ProxyServer;
  /** The options of one call per pod (the table's PodEndpoint objects), made once per table. */
  private readonly podOptions = new WeakMap<PodAddress, object>();
  private readonly upgradeAttempts = new WeakMap<object, UpgradeEntry>();
  private readonly tunnels = new WeakMap<Socket, UpgradeAttempt>();

  constructor(
    logger: ProxyLogger,
    /** Idle connections kept per pod; 0: one connection per request, closed after it. */
    keepalive: number,
    /** Closes a pod connection (in use or idle) after this long without traffic. */
    timeoutMs: number,
    library: ProxyLibrary,
  ) {
    this.agentOptions =
      keepalive > 0
        ? { keepAlive: true, maxFreeSockets: keepalive, timeout: timeoutMs, scheduling: 'lifo' }
        : { keepAlive: false, timeout: timeoutMs };
    this.proxy = createLibraryProxy(library);
    this.proxy.on('proxyReq', (proxyReq: ClientRequest, req: LibraryRequest<WebAttempt>) => {
      const { attempt } = req;
      if (writeUpstreamHead(proxyReq, attempt.request)) attempt.onRequest(proxyReq);
    });
    this.proxy.on('proxyRes', (proxyRes: IncomingMessage, req: LibraryRequest<WebAttempt>) =>
      req.attempt.onResponse(proxyRes),
    );
    this.proxy.on('proxyReqWs', (proxyReq: ClientRequest, req: object) => {
      const entry = this.upgradeAttempts.get(req);
      if (entry !== undefined) this.takeUpgradeAnswers(proxyReq, entry);
    });
    this.proxy.on('open', (upstream: Socket) => this.tunnels.get(upstream)?.onTunnelOpen(upstream));
    // Errors of an attempt reach its onError; these are the client socket's own, and
    // resets of a client that already left. Listening keeps the library from throwing them.
    this.proxy.on('error', (err: NodeJS.ErrnoException) =>
      logger.debug({ code: err.code }, 'client connection error during proxying'),
    );
    this.proxy.on('econnreset', (err: NodeJS.ErrnoException) =>
      logger.debug({ code: err.code }, 'client left during proxying'),
    );
  }

  /** One request to `pod`; the client's `socket` tells the library whether the client is still there. */
  web(pod: PodAddress, attempt: WebAttempt, socket: Duplex): void {
    try {
      this.proxy.web(new LibraryRequest(attempt, socket), LIBRARY_RESPONSE, this.optionsFor(pod), webFailed);
    } catch (err) {
      // Node refused to build the request (a header it will not send).
      process.nextTick(() => attempt.onError(new UnsendableHead((err as Error).message)));
    }
  }

  /**
   * One upgrade request to `pod`. `head` (bytes the client sent after its request) goes
   * back into the client socket, for the tunnel to carry: pass it to the first attempt
   * only. Returns a function that removes what this call attached to the client socket,
   * for an attempt given up.
   */
  ws(pod: PodAddress, attempt: UpgradeAttempt, client: Duplex, head: Buffer): () => void {
    const req = new LibraryRequest(attempt, client);
    const clientView = clientSocketView(client);
    this.upgradeAttempts.set(req, { attempt, client: clientView });
    // A library may keep one 'close' listener per call on the client socket (http-proxy-3
    // counts its sockets with it); the error listeners of an attempt given up are removed.
    if (client.getMaxListeners() > 0) client.setMaxListeners(client.getMaxListeners() + 1);
    let releaseErrors = (): void => {};
    try {
      releaseErrors = listenersAddedBy(client, ['error'], () => {
        // A new connection per upgrade: the socket becomes the tunnel, never back in a pool.
        this.proxy.ws(
          req,
          clientView.socket,
          head.length > 0 ? head : NO_HEAD,
          { target: targetOf(pod), agent: false },
          upgradeFailed,
        );
      });
    } catch (err) {
      process.nextTick(() => attempt.onError(new UnsendableHead((err as Error).message)));
    }
    return () => {
      releaseErrors();
      this.upgradeAttempts.delete(req);
    };
  }

  /**
   * Keeps the agents of the pods in `addresses` (the new table's, see podAddressKey) and
   * lets the others go: their idle connections are closed, their requests in flight
   * finish (and their connections close after the idle timeout).
   */
  retainOnly(addresses: ReadonlySet<string>): void {
    for (const [key, agent] of this.agents) {
      if (addresses.has(key)) continue;
      for (const idle of Object.values(agent.freeSockets)) for (const socket of idle ?? []) socket.destroy();
      this.agents.delete(key);
    }
  }

  close(): void {
    for (const agent of this.agents.values()) agent.destroy();
  }

  private optionsFor(pod: PodAddress): object {
    let options = this.podOptions.get(pod);
    if (options === undefined) {
      const key = podAddressKey(pod);
      let agent = this.agents.get(key);
      if (agent === undefined) {
        agent = new PodAgent(pod, this.agentOptions);
        this.agents.set(key, agent);
      }
      options = { target: targetOf(pod), agent };
      this.podOptions.set(pod, options);
    }
    return options;
  }

  /**
   * Registered before the library's own listeners on the new request, so the router
   * answers the client first and the library's own rendering is dropped (see
   * clientSocketView).
   */
  private takeUpgradeAnswers(proxyReq: ClientRequest, entry: UpgradeEntry): void {
    if (!writeUpstreamHead(proxyReq, entry.attempt.request)) return;
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
}

function targetOf(pod: PodAddress): { host: string; port: number; protocol: string } {
  // No path: the library then prefixes nothing to the request's own path.
  return { host: pod.ip, port: pod.port, protocol: 'http:' };
}

function webFailed(err: Error, req: unknown): void {
  (req as LibraryRequest<WebAttempt>).attempt.onError(err);
}

function upgradeFailed(err: Error, req: unknown): void {
  (req as LibraryRequest<UpgradeAttempt>).attempt.onError(err);
}
