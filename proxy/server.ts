import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { DataPlane } from '../src/core/data-plane.js';
import type { RouteTable } from '../src/core/route-table.js';
import { runInSlices, type Steps } from '../src/core/time-slices.js';
import { Balancers, type BalancerOptions } from './balancer.js';
import { decide, type Decision } from './decide.js';
import { answerClientError } from './client-error.js';
import { rawErrorResponse, redirectLocation } from './error-page.js';
import { forwardRequest, sendErrorPage, type ForwardSettings } from './forward.js';
import { MAX_HEAD } from './head-size.js';
import { selfCheckProxyLibrary } from './internals/http-proxy.js';
import { closeWhenWritten, keepsAlive, lastOnConnection, selfCheckNodeHttp } from './internals/node-http.js';
import { isClosing, lastAnswer, lastAnswerAfterBody, lingerAfterBytes, markClosing } from './lingering-close.js';
import { upstreamRequestHeaders } from './headers.js';
import { HTTP_PROXY, PodProxy, podAddressKey, type ProxyLibrary } from './http-proxy.js';
import { silentLogger, type ProxyLogger } from './logger.js';
import { RouteMatcher } from './matcher.js';
import { resolveProxyOptions, type ProxyOptions, type ProxySettings } from './proxy-options.js';
import { requestHasBody, scanRequestHeaders } from './request-headers.js';
import { ProxyCounters, type ProxyStats } from './stats.js';
import { forwardUpgrade, type TunnelSettings } from './tunnel.js';

// The in-process data plane: an HTTP server that answers every request as nginx does
// with the rendered config (the host, then the longest path prefix of the normalized URI;
// 444, 404, 403 and 301 where nginx gives them), and forwards the rest to pods.

export type { ProxyOptions } from './proxy-options.js';

export interface ProxyDataPlane extends DataPlane {
  /** The port actually bound (useful when 0 was asked for). */
  readonly port: number;
  /** What it runs with: the options given, and the settings' defaults for the others. */
  readonly settings: ProxySettings;
  /** Counters of what the proxy answered, since it started. */
  stats(): ProxyStats;
}

/** Everything a request needs from the current table; replaced as a whole by apply(). */
interface Routing {
  matcher: RouteMatcher;
  balancers: Balancers;
}

/**
 * The routing for a new table, prepared in steps while requests keep the current one; the
 * matcher and the balancers then switch in the same step (a small change updates them in
 * place), so no request sees one without the other.
 */
function* nextRouting(
  current: Routing,
  table: RouteTable,
  options: BalancerOptions,
): Steps<{ routing: Routing; podAddresses: Set<string> }> {
  const matcher = yield* current.matcher.preparing(table);
  const balancers = yield* current.balancers.preparing(table.routes, options);
  const podAddresses = yield* addressesOf(table);
  return { routing: { matcher: matcher(), balancers: balancers() }, podAddresses };
}

/** Every pod address (`IP:PORT`) the table routes to, worked out in steps. */
function* addressesOf(table: RouteTable): Steps<Set<string>> {
  const addresses = new Set<string>();
  for (let i = 0; i < table.routes.length; i++) {
    if (i % 256 === 255) yield;
    for (const b of (table.routes[i] as RouteTable['routes'][number]).backends) addresses.add(podAddressKey(b));
  }
  return addresses;
}

/** Node's margin on its keep-alive timer (a constant before Node 24, keepAliveTimeoutBuffer since), taken off ours. */
const NODE_KEEPALIVE_MARGIN_MS = 1000;
/** Statuses after which nginx closes the connection: the rest of the request cannot be trusted. */
const CLOSING_STATUSES = new Set([400, 405, 413, 414, 501, 505]);
/** The number of requests a client connection carried so far (keepalive_requests). */
const REQUESTS = Symbol('requests');
/** Longest stretch an apply builds its matcher and balancers before letting requests run. */
const APPLY_SLICE_MS = 5;
/** While closing, how often connections that finished their request are closed. */
const DRAIN_SWEEP_MS = 50;

function respond(
  req: IncomingMessage,
  res: ServerResponse,
  decision: Extract<Decision, { action: 'respond' }>,
  stats: ProxyCounters,
): void {
  const extra: Record<string, string> = {};
  if (decision.status === 301 && decision.location !== undefined && decision.host !== undefined) {
    extra.Location = redirectLocation(decision.host, req.socket.localPort, decision.location);
  }
  if (decision.readsBody === true) lastAnswerAfterBody(req, res);
  else if (CLOSING_STATUSES.has(decision.status)) lastAnswer(req, res);
  sendErrorPage(res, decision.status, stats, extra);
}

/**
 * Closes the connection without answering `req`, once the answers to the requests
 * pipelined before it are out (nginx reads a request only after answering the one before).
 */
function dropAfterEarlierAnswers(req: IncomingMessage, res: ServerResponse): void {
  markClosing(req.socket);
  // Node gives `res` the socket when the answers queued before it are written.
  if (res.socket === null) res.once('socket', (socket: Socket) => closeWhenWritten(socket));
  else req.socket.destroy();
}

/** What the request handlers read: set at start, but for `routing`, which apply() replaces. */
interface ProxyContext {
  logger: ProxyLogger;
  apiKeyHeader: string;
  keepalive: number;
  decideOptions: { maxBodyBytes: number };
  keepaliveTimeoutMs: number;
  keepaliveRequests: number;
  /** Node's idle timer on a kept connection: its keepAliveTimeout plus its margin. */
  nodeIdleMs: number;
  /** keepalive_timeout is shorter than Node's idle timer, so it is set on the socket after each answer. */
  shortKeepalive: boolean;
  pods: PodProxy;
  stats: ProxyCounters;
  tunnels: Set<Duplex>;
  forwardSettings: ForwardSettings;
  tunnelSettings: TunnelSettings;
  routing: Routing;
}

function proxyContext(settings: ProxySettings, logger: ProxyLogger, library: ProxyLibrary): ProxyContext {
  const timeoutMs = settings.upstreamTimeoutMs;
  const maxBodyBytes = settings.clientMaxBodySize;
  const keepaliveTimeoutMs = settings.keepaliveTimeoutMs;
  // Node's idle timer on a kept connection is its keepAliveTimeout plus its margin, so at
  // least the margin: a shorter keepalive_timeout is set on the socket after each answer.
  const nodeIdleMs = Math.max(1, keepaliveTimeoutMs - NODE_KEEPALIVE_MARGIN_MS) + NODE_KEEPALIVE_MARGIN_MS;
  const keepalive = settings.upstreamKeepalive;
  const pods = new PodProxy(logger, keepalive, timeoutMs, library);
  const stats = new ProxyCounters();
  const tunnels = new Set<Duplex>();
  return {
    logger,
    apiKeyHeader: settings.apiKeyHeader.toLowerCase(),
    keepalive,
    decideOptions: { maxBodyBytes },
    keepaliveTimeoutMs,
    // keepalive_timeout 0 turns keep-alive off, as keepalive_requests 0 does.
    keepaliveRequests: keepaliveTimeoutMs === 0 ? 0 : settings.keepaliveRequests,
    nodeIdleMs,
    shortKeepalive: keepaliveTimeoutMs > 0 && keepaliveTimeoutMs < nodeIdleMs,
    pods,
    stats,
    tunnels,
    forwardSettings: { pods, body: { maxBytes: maxBodyBytes, timeoutMs: settings.clientBodyTimeoutMs }, logger, stats },
    tunnelSettings: {
      pods,
      timeoutMs,
      logger,
      stats,
      track: (sockets) => {
        for (const s of sockets) {
          tunnels.add(s);
          s.once('close', () => tunnels.delete(s));
        }
      },
    },
    routing: { matcher: new RouteMatcher({ routes: [], rejections: [] }), balancers: Balancers.empty() },
  };
}

function keepIdleFor(ctx: ProxyContext, socket: Socket, res: ServerResponse): void {
  // Node set its timer in its own 'finish' listener, unless answers are still queued.
  if (keepsAlive(res) && !socket.destroyed && socket.timeout === ctx.nodeIdleMs)
    socket.setTimeout(ctx.keepaliveTimeoutMs);
}

function handleRequest(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
  // keepalive_requests: the last request a connection may carry is answered with
  // "Connection: close"; nginx reads nothing after it, so requests sent behind it get nothing.
  const socket = req.socket as Socket & { [REQUESTS]?: number };
  // Read behind an answer that closes the connection: nginx would not have read it.
  if (socket.destroyed || isClosing(socket)) return;
  const count = (socket[REQUESTS] ?? 0) + 1;
  socket[REQUESTS] = count;
  if (count >= ctx.keepaliveRequests) {
    lastOnConnection(res);
    if (count > ctx.keepaliveRequests && count > 1) return;
  }
  if (ctx.shortKeepalive) res.once('finish', () => keepIdleFor(ctx, socket, res));
  // Read once: a table swapped in now applies to the next request, not this one.
  const current = ctx.routing;
  req.on('error', () => res.destroy());
  res.on('error', () => req.destroy());
  const headers = scanRequestHeaders(req.rawHeaders, ctx.apiKeyHeader);
  const decision = decide(req, headers, current.matcher, ctx.decideOptions);
  switch (decision.action) {
    case 'drop':
      ctx.stats.dropped();
      dropAfterEarlierAnswers(req, res);
      return;
    case 'respond':
      respond(req, res, decision, ctx.stats);
      return;
    case 'forward': {
      // nginx says "100 Continue" only once it reads the body, i.e. for a request it forwards.
      if (expectsContinue) res.writeContinue();
      const request = {
        method: req.method ?? 'GET',
        uri: decision.uri,
        headers: upstreamRequestHeaders(req.rawHeaders, decision.host, headers, ctx.keepalive > 0),
        hasBody: requestHasBody(headers),
      };
      const group = current.balancers.groupFor(decision.route);
      forwardRequest(req, res, { host: decision.host, uri: decision.uri, group }, request, ctx.forwardSettings);
    }
  }
}

function handleUpgrade(ctx: ProxyContext, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const current = ctx.routing;
  socket.on('error', () => socket.destroy());
  const headers = scanRequestHeaders(req.rawHeaders, ctx.apiKeyHeader);
  const decision = decide(req, headers, current.matcher, ctx.decideOptions);
  switch (decision.action) {
    case 'drop':
      ctx.stats.dropped();
      socket.destroy();
      return;
    case 'respond': {
      const extra: [string, string][] =
        decision.status === 301 && decision.location !== undefined && decision.host !== undefined
          ? [['Location', redirectLocation(decision.host, (socket as Socket).localPort, decision.location)]]
          : [];
      ctx.stats.answered(decision.status);
      socket.write(rawErrorResponse(decision.status, extra));
      // nginx reads the body it refused before closing; Node hands over the bytes after
      // the head as they are, so only a Content-Length says how many (a chunked body is
      // not waited for: see the README).
      const length =
        decision.readsBody === true && headers.contentLength !== undefined ? Number(headers.contentLength) : 0;
      lingerAfterBytes(socket, length - head.length);
      return;
    }
    case 'forward': {
      const request = {
        method: req.method ?? 'GET',
        uri: decision.uri,
        headers: upstreamRequestHeaders(req.rawHeaders, decision.host, headers, ctx.keepalive > 0),
        hasBody: false,
      };
      const group = current.balancers.groupFor(decision.route);
      forwardUpgrade(req, socket, head, { host: decision.host, uri: decision.uri, group }, request, ctx.tunnelSettings);
    }
  }
}

function createServer(ctx: ProxyContext, settings: ProxySettings): http.Server {
  const server = http.createServer({
    // Host rules are nginx's, applied in decide().
    requireHostHeader: false,
    // Past the largest head nginx takes: nginx's own limits are applied in decide().
    maxHeaderSize: MAX_HEAD + 1024,
    // client_header_timeout, from the connection's start or the first byte of a request
    // on: Node checks it every connectionsCheckingInterval, which sets its precision.
    headersTimeout: settings.clientHeaderTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, Math.max(10, Math.floor(settings.clientHeaderTimeoutMs / 10))),
    // No limit on a whole request, as nginx.
    requestTimeout: 0,
    // keepalive_timeout: Node keeps an idle connection a margin longer than it is told.
    keepAliveTimeout: Math.max(1, ctx.keepaliveTimeoutMs - NODE_KEEPALIVE_MARGIN_MS),
  });
  if ('keepAliveTimeoutBuffer' in server)
    Object.assign(server, { keepAliveTimeout: ctx.keepaliveTimeoutMs || 1, keepAliveTimeoutBuffer: 0 });
  // nginx counts header lines itself (decide), past Node's default of 2,000.
  server.maxHeadersCount = 0;
  server.on('request', (req, res) => handleRequest(ctx, req, res, false));
  server.on('checkContinue', (req, res) => handleRequest(ctx, req, res, true));
  // nginx ignores expectations it does not know; Node would answer 417.
  server.on('checkExpectation', (req, res) => handleRequest(ctx, req, res, false));
  server.on('upgrade', (req, socket, head) => handleUpgrade(ctx, req, socket, head));
  // CONNECT: nginx refuses it after reading the head (405, or 400 for a target that is no URI).
  server.on('connect', (req, socket, head) => handleUpgrade(ctx, req, socket, head));
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket, ctx.stats));
  server.on('error', (err) => ctx.logger.error({ err }, 'proxy server error'));
  return server;
}

async function listen(server: http.Server, settings: ProxySettings): Promise<number> {
  const bindAddress = settings.host === '*' ? '0.0.0.0' : settings.host;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(settings.port, bindAddress, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

async function closeGracefully(server: http.Server, ctx: ProxyContext, graceMs: number): Promise<void> {
  // Draining, as nginx's graceful stop does: the listener closes at once (new
  // connections are refused), a request that arrives on a kept-alive connection is
  // answered with "Connection: close", a connection is closed as soon as it has no
  // request in flight, and WebSockets may go on until the grace ends.
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  const lastRequest = (_req: IncomingMessage, res: ServerResponse): void => lastOnConnection(res);
  for (const event of ['request', 'checkContinue', 'checkExpectation'] as const)
    server.prependListener(event, lastRequest);
  server.closeIdleConnections();
  const sweep = setInterval(() => server.closeIdleConnections(), DRAIN_SWEEP_MS);
  const grace = setTimeout(() => {
    server.closeAllConnections();
    for (const s of ctx.tunnels) s.destroy();
  }, graceMs);
  grace.unref();
  sweep.unref();
  await closed;
  clearTimeout(grace);
  clearInterval(sweep);
  for (const s of ctx.tunnels) s.destroy();
  ctx.pods.close();
}

/** Starts the proxy; an option left out takes the setting's default, as `k8s-router run` with no flags. */
export async function startProxy(options: ProxyOptions = {}): Promise<ProxyDataPlane> {
  const settings = resolveProxyOptions(options);
  const library = options.proxyLibrary ?? HTTP_PROXY;
  // Node and the library are used through internals: stop here, in one line, if they changed.
  await selfCheckNodeHttp();
  await selfCheckProxyLibrary(library);
  const ctx = proxyContext(settings, options.logger ?? silentLogger, library);
  const balancerOptions = { failTimeoutMs: settings.failTimeoutMs };
  let applying: Promise<void> = Promise.resolve();
  const server = createServer(ctx, settings);
  const port = await listen(server, settings);

  return {
    port,
    settings,
    stats: () => ctx.stats.snapshot(),
    apply(table: RouteTable): Promise<void> {
      // One at a time, each made from the routing before it, in slices so that a table of
      // 200,000 routes does not hold up the requests served meanwhile.
      const built = applying.then(async () => {
        const next = (await runInSlices(nextRouting(ctx.routing, table, balancerOptions), APPLY_SLICE_MS)).value;
        ctx.routing = next.routing;
        // Kept pod connections to pods no route names any more are let go.
        ctx.pods.retainOnly(next.podAddresses);
      });
      applying = built.catch(() => undefined);
      return built;
    },
    close: () => closeGracefully(server, ctx, settings.closeGraceMs),
  };
}
