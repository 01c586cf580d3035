import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { defaultConfig, withDefaults, type RouterConfig } from '../core/config.js';
import type { Registry } from 'prom-client';
import { createMetrics } from './metrics.js';
import { decideReadiness, planeReports, type Readiness } from './readiness.js';
import { SecretScrubber } from '../core/redact.js';
import { nginxConfText, routesText, statusReport } from './status.js';
import { STATUS_PAGE_HTML, STATUS_PAGE_SCRIPT } from './status-page.js';
import type { AdminView } from './view.js';

// The admin server (fastify, on its own port): health, readiness, metrics, what the router
// routes and why not, and the status page. It only reads what the router's parts report.

/** Where the admin server listens; each one left out of AdminServerOptions takes the setting's default. */
export interface AdminServerSettings {
  /** ADMIN_PORT; 0 takes a free one. */
  port: number;
  /** ADMIN_ADDRESS. */
  host: string;
}

export interface AdminServerOptions extends Partial<AdminServerSettings> {
  logger?: Logger;
}

/** The admin server's settings as `run` gives them, or null when ADMIN_PORT is off. */
export function adminServerOptionsFrom(config: RouterConfig): AdminServerSettings | null {
  return config.adminPort === 'off' ? null : { port: config.adminPort, host: config.adminAddress };
}

/** Where an admin server started with `options` listens: what is not given takes the setting's default. */
export function resolveAdminServerOptions(options: AdminServerOptions = {}): AdminServerSettings {
  const defaults = adminServerOptionsFrom(defaultConfig());
  if (defaults === null) throw new Error('the settings table must give ADMIN_PORT a port by default');
  return withDefaults(defaults, options);
}

export interface AdminServer {
  /** The port bound (useful when 0 was asked for). */
  readonly port: number;
  readonly address: string;
  /** From now on /readyz answers 503: the router is shutting down. */
  markStopping(): void;
  close(): Promise<void>;
}

/** The event-loop monitor's timer period; it records each period, so the delay is what exceeds it. */
const LOOP_SAMPLE_MS = 10;
const JSON_TYPE = 'application/json; charset=utf-8';
const TEXT_TYPE = 'text/plain; charset=utf-8';

/** The status page and its script. */
function addPageRoutes(app: FastifyInstance): void {
  app.get('/', async (_request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header(
        'Content-Security-Policy',
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'",
      )
      .send(STATUS_PAGE_HTML),
  );
  app.get('/status-page.js', async (_request, reply) =>
    reply.type('text/javascript; charset=utf-8').send(STATUS_PAGE_SCRIPT),
  );
}

/** /healthz, /readyz and /metrics: how the router itself is. */
function addHealthRoutes(
  app: FastifyInstance,
  loopDelay: IntervalHistogram,
  readiness: () => Readiness,
  registry: Registry,
): void {
  app.get('/healthz', async (_request, reply) => {
    // Answering at all proves the event loop turns; the delays (since the last /healthz) say how freely.
    const ms = (ns: number): number => Math.max(0, Math.round((ns / 1e6 - LOOP_SAMPLE_MS) * 100) / 100);
    const body = {
      status: 'ok',
      uptimeSeconds: Math.round(process.uptime()),
      eventLoopDelayMs: { mean: ms(loopDelay.mean), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) },
    };
    loopDelay.reset();
    return reply.type(JSON_TYPE).send(JSON.stringify(body));
  });

  app.get('/readyz', async (_request, reply) => {
    const verdict = readiness();
    return reply
      .code(verdict.ready ? 200 : 503)
      .type(JSON_TYPE)
      .send(JSON.stringify(verdict));
  });

  app.get('/metrics', async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()));
}

/** /routes, /status and /nginx.conf: what the router serves. */
function addTableRoutes(app: FastifyInstance, view: AdminView, readiness: () => Readiness): void {
  app.get('/routes', async (_request, reply) => {
    const table = view.controller.currentTable();
    if (table === null)
      return reply
        .code(503)
        .type(JSON_TYPE)
        .send(JSON.stringify({ error: 'no route table yet' }));
    return reply.type(JSON_TYPE).send(routesText(table));
  });

  app.get('/status', async (_request, reply) =>
    reply.type(JSON_TYPE).send(`${JSON.stringify(statusReport(view, readiness()), null, 2)}\n`),
  );

  app.get('/nginx.conf', async (_request, reply) => {
    const conf = await nginxConfText(view);
    if (conf === null)
      return reply.code(503).type(TEXT_TYPE).send('no nginx.conf yet: no route table has been applied\n');
    return reply.type(TEXT_TYPE).send(conf);
  });
}

export async function startAdminServer(view: AdminView, options: AdminServerOptions = {}): Promise<AdminServer> {
  const settings = resolveAdminServerOptions(options);
  let stopping = false;
  const scrubber = new SecretScrubber();
  const current = view.controller.latest();
  if (current !== null) scrubber.learn(current.table);
  // Returns at once, as the controller asks of its subscribers.
  const unsubscribe = view.controller.subscribe((update) => scrubber.learn(update.table));
  const registry = createMetrics(view, () => stopping);
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_SAMPLE_MS });
  loopDelay.enable();
  const readiness = () => decideReadiness(planeReports(view.planes), stopping);

  const app = Fastify({ logger: false, forceCloseConnections: true });

  app.addHook('onSend', async (_request, reply, payload) => {
    reply.header('Cache-Control', 'no-store');
    reply.header('X-Content-Type-Options', 'nosniff');
    // Every answer, whatever built it, loses any API key the router ever held.
    return typeof payload === 'string' ? scrubber.scrub(payload) : payload;
  });

  addPageRoutes(app);
  addHealthRoutes(app, loopDelay, readiness, registry);
  addTableRoutes(app, view, readiness);

  app.setErrorHandler(async (err, _request, reply) => {
    options.logger?.error({ err: (err as Error).message }, 'admin request failed');
    return reply
      .code(500)
      .type(JSON_TYPE)
      .send(JSON.stringify({ error: 'internal error' }));
  });

  try {
    await app.listen({ port: settings.port, host: settings.host });
  } catch (err) {
    unsubscribe();
    loopDelay.disable();
    await app.close();
    throw err;
  }
  const address = app.server.address() as AddressInfo;
  return {
    port: address.port,
    address: address.address,
    markStopping() {
      stopping = true;
    },
    async close() {
      unsubscribe();
      loopDelay.disable();
      await app.close();
    },
  };
}
