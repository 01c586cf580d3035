import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { DataPlane } from '../src/core/data-plane.js';
import type { RouteTable } from '../src/core/route-table.js';
import { runInSlices, type Steps } from '../src/core/time-slices.js';
import { Balancers, type BalancerOptions } from './balancer.js';
import { decide, type Decision } from './decide.js';
import { rawErrorResponse, redirectLocation } from './error-page.js';
import { forwardRequest, sendErrorPage } from './forward.js';
import { PodProxy } from './http-proxy.js';
import { silentLogger, type ProxyLogger } from './logger.js';
import { RouteMatcher } from './matcher.js';
import { forwardUpgrade } from './tunnel.js';

// The in-process data plane: an HTTP server that answers every request as nginx does
// with the rendered config (see SPEC 5), and forwards the rest to pods.

export interface ProxyOptions {
  port: number;
  /** IP address to bind; "*" means every IPv4 address, as nginx's `listen PORT`. */
  host: string;
  apiKeyHeader: string;
  /** nginx's proxy_connect/read/send_timeout, 60 s by default. */
  upstreamTimeoutMs?: number;
  /** nginx's fail_timeout, 10 s by default. */
  failTimeoutMs?: number;
  /** nginx's client_max_body_size, 1 MiB by default. */
  maxBodyBytes?: number;
  /** How long close() lets requests and WebSockets in flight finish before cutting them; 5 s by default. */
  closeGraceMs?: number;
  logger?: ProxyLogger;
}

export interface ProxyDataPlane extends DataPlane {
  /** The port actually bound (useful when 0 was asked for). */
  readonly port: number;
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
function* nextRouting(current: Routing, table: RouteTable, options: BalancerOptions): Steps<Routing> {
  const matcher = yield* current.matcher.preparing(table);
  const balancers = yield* current.balancers.preparing(table.routes, options);
  return { matcher: matcher(), balancers: balancers() };
}

const DEFAULTS = { upstreamTimeoutMs: 60_000, failTimeoutMs: 10_000, maxBodyBytes: 1024 * 1024 };
/** Longest stretch an apply builds its matcher and balancers before letting requests run. */
const APPLY_SLICE_MS = 5;
/** How long close() lets requests in flight finish before cutting them, unless told otherwise. */
const CLOSE_GRACE_MS = 5_000;
/** While closing, how often connections that finished their request are closed. */
const DRAIN_SWEEP_MS = 50;

function respond(res: ServerResponse, decision: Extract<Decision, { action: 'respond' }>, localPort: number | undefined): void {
  const extra: Record<string, string> = {};
  if (decision.status === 301 && decision.location !== undefined && decision.host !== undefined) {
    extra.Location = redirectLocation(decision.host, localPort, decision.location);
  }
  // nginx closes the connection after a 400 or 413: the rest of the request cannot be trusted.
  if (decision.status === 400 || decision.status === 413) res.shouldKeepAlive = false;
  sendErrorPage(res, decision.status, extra);
}

export async function startProxy(options: ProxyOptions): Promise<ProxyDataPlane> {
  const logger = options.logger ?? silentLogger;
  const timeoutMs = options.upstreamTimeoutMs ?? DEFAULTS.upstreamTimeoutMs;
  const balancerOptions = { failTimeoutMs: options.failTimeoutMs ?? DEFAULTS.failTimeoutMs };
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULTS.maxBodyBytes;
  const decideOptions = { apiKeyHeader: options.apiKeyHeader, maxBodyBytes };
  const pods = new PodProxy(logger);
  const tunnels = new Set<Duplex>();

  let routing: Routing = { matcher: new RouteMatcher({ routes: [], rejections: [] }), balancers: Balancers.empty() };
  let applying: Promise<void> = Promise.resolve();

  const headOf = (req: IncomingMessage) => ({
    method: req.method ?? 'GET',
    target: req.url ?? '',
    httpVersionMajor: req.httpVersionMajor,
    httpVersionMinor: req.httpVersionMinor,
    rawHeaders: req.rawHeaders,
  });

  const handle = (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void => {
    // Read once: a table swapped in now applies to the next request, not this one.
    const current = routing;
    req.on('error', () => res.destroy());
    res.on('error', () => req.destroy());
    const decision = decide(headOf(req), current.matcher, decideOptions);
    switch (decision.action) {
      case 'drop':
        req.socket.destroy();
        return;
      case 'respond':
        respond(res, decision, req.socket.localPort);
        return;
      case 'forward':
        // nginx says "100 Continue" only once it reads the body, i.e. for a request it forwards.
        if (expectsContinue) res.writeContinue();
        forwardRequest(
          req,
          res,
          { host: decision.host, uri: decision.uri, group: current.balancers.groupFor(decision.route) },
          { pods, timeoutMs, maxBodyBytes, logger },
        );
    }
  };

  const handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const current = routing;
    socket.on('error', () => socket.destroy());
    const decision = decide(headOf(req), current.matcher, decideOptions);
    switch (decision.action) {
      case 'drop':
        socket.destroy();
        return;
      case 'respond': {
        const extra: [string, string][] =
          decision.status === 301 && decision.location !== undefined && decision.host !== undefined
            ? [['Location', redirectLocation(decision.host, (socket as Socket).localPort, decision.location)]]
            : [];
        socket.end(rawErrorResponse(decision.status, extra));
        return;
      }
      case 'forward':
        forwardUpgrade(
          req,
          socket,
          head,
          { host: decision.host, uri: decision.uri, group: current.balancers.groupFor(decision.route) },
          {
            pods,
            timeoutMs,
            logger,
            track: (sockets) => {
              for (const s of sockets) {
                tunnels.add(s);
                s.once('close', () => tunnels.delete(s));
              }
            },
          },
        );
    }
  };

  const server = http.createServer({
    // Host rules are nginx's, applied in decide().
    requireHostHeader: false,
    // nginx: keepalive_timeout 75s, client_header_timeout 60s, no limit on a whole request.
    keepAliveTimeout: 75_000,
    headersTimeout: 60_000,
    requestTimeout: 0,
  });
  server.on('request', (req, res) => handle(req, res, false));
  server.on('checkContinue', (req, res) => handle(req, res, true));
  // nginx ignores expectations it does not know; Node would answer 417.
  server.on('checkExpectation', (req, res) => handle(req, res, false));
  server.on('upgrade', handleUpgrade);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // A request Node cannot parse is one nginx answers with 400 too.
    if (socket.writable && err.code !== 'ECONNRESET') socket.end(rawErrorResponse(400));
    else socket.destroy();
  });
  server.on('error', (err) => logger.error({ err }, 'proxy server error'));

  const bindAddress = options.host === '*' ? '0.0.0.0' : options.host;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, bindAddress, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    apply(table: RouteTable): Promise<void> {
      // One at a time, each made from the routing before it, in slices so that a table of
      // 200,000 routes does not hold up the requests served meanwhile.
      const built = applying.then(async () => {
        routing = (await runInSlices(nextRouting(routing, table, balancerOptions), APPLY_SLICE_MS)).value;
      });
      applying = built.catch(() => undefined);
      return built;
    },
    async close(): Promise<void> {
      // Draining, as nginx's graceful stop does: the listener closes at once (new
      // connections are refused), a request that arrives on a kept-alive connection is
      // answered with "Connection: close", a connection is closed as soon as it has no
      // request in flight, and WebSockets may go on until the grace ends.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      const lastRequest = (_req: IncomingMessage, res: ServerResponse): void => {
        res.shouldKeepAlive = false;
      };
      for (const event of ['request', 'checkContinue', 'checkExpectation'] as const) server.prependListener(event, lastRequest);
      server.closeIdleConnections();
      const sweep = setInterval(() => server.closeIdleConnections(), DRAIN_SWEEP_MS);
      const grace = setTimeout(() => {
        server.closeAllConnections();
        for (const s of tunnels) s.destroy();
      }, options.closeGraceMs ?? CLOSE_GRACE_MS);
      grace.unref();
      sweep.unref();
      await closed;
      clearTimeout(grace);
      clearInterval(sweep);
      for (const s of tunnels) s.destroy();
      pods.close();
    },
  };
}
