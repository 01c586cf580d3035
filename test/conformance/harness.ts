import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Affinity, Route, RouteTable } from '../../src/core/route-table.js';
import { createNginxDataPlane, type NginxDataPlane } from '../../nginx/process.js';
import type { ClientLimits } from '../../nginx/client-directives.js';
import { documentedDelivery, type TableDelivery } from '../../nginx/delivery.js';
import { dynamicDelivery } from '../../nginx/dynamic-delivery.js';
import { bundledLuaDir, findLuaModules } from '../../nginx/lua-modules.js';
import { renderNginxConf, type RenderOptions } from '../../nginx/render.js';
import type { NginxMode } from '../../src/core/config.js';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { startProxy, type ProxyDataPlane } from '../../proxy/server.js';
import { NGINX_BINARY } from '../support/nginx-check.js';
import { closeCheckingLua } from '../support/dynamic-nginx.js';
import type { ReceivedRequest, TestPod } from '../support/pods.js';
import { sendRaw, type RawOutcome, type RawRequest } from './raw-http.js';
import { proxyLibraryUnderTest } from '../support/proxy-library.js';

// The differential harness: the same table and the same requests through the three data
// planes (nginx on the documented config, dynamic nginx answering from the table as data,
// and the in-process proxy), reduced to what must agree. Documented nginx is the
// reference: the other two must observe what it observes.

export const API_KEY_HEADER = 'X-ROUTING-API-KEY';

export interface RouteSpec {
  host: string;
  path: string;
  pods: readonly { name: string; ip: string; port: number }[];
  apiKey?: string | null;
  /** 'ip' for `hash $remote_addr consistent`; round robin when absent. */
  affinity?: Affinity | null;
}

export function tableOf(specs: readonly RouteSpec[]): RouteTable {
  const routes: Route[] = specs.map((s) => ({
    host: s.host,
    path: s.path,
    namespace: 'default',
    apiKey: s.apiKey ?? null,
    affinity: s.affinity ?? null,
    backends: [...s.pods]
      .map((p) => ({ pod: p.name, namespace: 'default', ip: p.ip, port: p.port }))
      .sort((a, b) => (a.pod < b.pod ? -1 : a.pod > b.pod ? 1 : 0)),
  }));
  routes.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { routes, rejections: [] };
}

/** What one request observably did, in a form that compares with deepStrictEqual. */
export type Observation =
  | { answer: 'dropped' }
  | {
      answer: 'response';
      status: number;
      /** Location with the data plane's own port written as PORT. */
      location?: string;
      /** The pod's own answer, when a pod answered. */
      pod?: string;
      received?: Omit<ReceivedRequest, 'pod' | 'headers' | 'remotePort'> & { headers: [string, string][] };
      body?: string;
    };

/**
 * Body framing is each sender's own: nginx reads a chunked body whole and sends it with
 * Content-Length, the proxy streams it chunked. The body itself is compared.
 */
const FRAMING = new Set(['content-length', 'transfer-encoding']);

export function observe(outcome: RawOutcome, port: number): Observation {
  if (outcome.kind === 'dropped') return { answer: 'dropped' };
  const obs: Observation = { answer: 'response', status: outcome.status };
  const location = outcome.headers.find(([k]) => k.toLowerCase() === 'location')?.[1];
  if (location !== undefined) obs.location = location.replace(`:${port}/`, ':PORT/');
  const pod = outcome.headers.find(([k]) => k.toLowerCase() === 'x-pod')?.[1];
  if (pod !== undefined) {
    obs.pod = pod;
    const type = outcome.headers.find(([k]) => k.toLowerCase() === 'content-type')?.[1];
    if (type === 'application/json' && outcome.body.length > 0) {
      const r = JSON.parse(outcome.body.toString('latin1')) as ReceivedRequest;
      obs.received = {
        method: r.method,
        uri: r.uri,
        httpVersion: r.httpVersion,
        headers: r.headers
          .filter(([k]) => !FRAMING.has(k.toLowerCase()))
          .sort(([a, va], [b, vb]) =>
            a.toLowerCase() < b.toLowerCase()
              ? -1
              : a.toLowerCase() > b.toLowerCase()
                ? 1
                : va < vb
                  ? -1
                  : va > vb
                    ? 1
                    : 0,
          ),
        body: r.body,
      };
    } else {
      obs.body = outcome.body.toString('latin1');
    }
  }
  return obs;
}

export interface DataPlaneUnderTest {
  readonly name: 'nginx' | 'proxy';
  readonly port: number;
  apply(table: RouteTable): Promise<void>;
  close(): Promise<void>;
}

export interface PairOptions {
  /** Upstream timeout on both sides, in seconds (nginx takes whole seconds here). */
  upstreamTimeoutSeconds?: number;
  /** UPSTREAM_KEEPALIVE on both sides (0, the documented config, when absent). */
  upstreamKeepalive?: number;
  /** Client timeouts and limits on both sides (CLIENT_HEADER_TIMEOUT_MS, ...); nginx's defaults when absent. */
  clientLimits?: ClientLimits;
  /** Test-only directives added to nginx's http block (the realip module, say). */
  nginxHttpDirectives?: readonly string[];
}

/** The two modes every conformance suite runs in: the documented config, and upstream keep-alive. */
export const MODES = [
  { upstreamKeepalive: 0, label: '' },
  { upstreamKeepalive: 32, label: ' [upstream keep-alive]' },
] as const;

export type Mode = (typeof MODES)[number];

/**
 * An nginx under test, documented or dynamic, on 127.0.0.1 and a free port, in a
 * throw-away prefix removed on close.
 */
export interface NginxPlaneUnderTest {
  readonly port: number;
  /** Serves `table`: documented nginx reloads when its config changed, dynamic nginx takes it as data. */
  apply(table: RouteTable): Promise<void>;
  /**
   * Serves `table` from fresh upstream state (round-robin positions, failure marks): a
   * reload, which starts new workers.
   */
  applyFresh(table: RouteTable): Promise<void>;
  errorLog(): Promise<string>;
  close(): Promise<void>;
}

/**
 * The product's nginx data plane (createNginxDataPlane: nginx -t, atomic install,
 * foreground master, SIGHUP reloads confirmed through the status server). applyFresh
 * adds a comment that differs each time, so the config is new and nginx reloads.
 */
export interface NginxUnderTest extends NginxPlaneUnderTest {
  readonly plane: NginxDataPlane;
}

const RETIREMENT_WARNING = 'old nginx workers still accept connections';

/**
 * The test's own http-level directives: short upstream timeouts, so that a timeout
 * compares without waiting 60 s (the renderers are not changed), and what a suite adds.
 */
function upstreamTimeouts(options: PairOptions): string[] {
  const s = options.upstreamTimeoutSeconds;
  const timeouts =
    s === undefined ? [] : [`proxy_connect_timeout ${s}s;`, `proxy_send_timeout ${s}s;`, `proxy_read_timeout ${s}s;`];
  return [...timeouts, ...(options.nginxHttpDirectives ?? [])];
}

/** Dynamic nginx (NGINX_MODE=dynamic) on the same options, run by the product's manager. */
export function startDynamic(table: RouteTable, options: PairOptions = {}): Promise<NginxUnderTest> {
  return startManagedNginx('dynamic', table, options);
}

/** Documented nginx (the rendered config, reloaded for each change), run by the product's manager. */
export function startNginx(table: RouteTable, options: PairOptions = {}): Promise<NginxUnderTest> {
  return startManagedNginx('documented', table, options);
}

/**
 * The product's nginx data plane (createNginxDataPlane: nginx -t, atomic install,
 * foreground master, reloads confirmed through the status server; in dynamic mode the
 * table sent over the control socket until every worker serves it), on 127.0.0.1 and a
 * free port, in a throw-away prefix removed on close. The config gets the test's http
 * directives and a comment that applyFresh changes, so that nginx reloads (new workers,
 * fresh balancing state) in either mode.
 */
async function startManagedNginx(mode: NginxMode, table: RouteTable, options: PairOptions): Promise<NginxUnderTest> {
  const prefix = await mkdtemp(join(tmpdir(), `k8s-router-conformance-${mode}-`));
  // nginx's workers run as nobody and must reach the temp dir under the prefix.
  await chmod(prefix, 0o755);
  const port = await pickFreeLoopbackPort();
  let statusPort = await pickFreeLoopbackPort();
  while (statusPort === port) statusPort = await pickFreeLoopbackPort();
  const httpDirectives = upstreamTimeouts(options);
  let generation = 0;
  const settings = {
    port,
    listenAddress: '127.0.0.1',
    apiKeyHeader: API_KEY_HEADER,
    upstreamKeepalive: options.upstreamKeepalive ?? 0,
    ...options.clientLimits,
  };
  const forTests = (text: string): string => {
    const withDirectives =
      httpDirectives.length === 0
        ? text
        : text.replace(/^http \{\n/m, (open) => `${open}${httpDirectives.join('\n')}\n`);
    return `${withDirectives}# conformance: fresh state ${generation}\n`;
  };
  const delivery = await deliveryFor(mode, prefix, settings);
  // What the manager logs at warn and above: an apply after which old workers still accept fails here.
  const warnings: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
  const plane = createNginxDataPlane({
    nginxBinary: NGINX_BINARY,
    prefix,
    statusPort,
    logger,
    delivery: { ...delivery, config: (t, runtime) => forTests(delivery.config(t, runtime) as string) },
  });
  const apply = async (t: RouteTable): Promise<void> => {
    const seen = warnings.length;
    await plane.apply(t);
    const stale = warnings.slice(seen).find((line) => line.includes(RETIREMENT_WARNING));
    if (stale !== undefined) throw new Error(`nginx reloaded, but old workers still accept connections: ${stale}`);
  };
  const errorLog = (): Promise<string> => readFile(plane.files.errorLog, 'utf8').catch(() => '');
  const close = (): Promise<void> => closeCheckingLua(() => plane.close(), errorLog, prefix);
  try {
    await apply(table);
  } catch (err) {
    await close();
    throw err;
  }
  return {
    port,
    plane,
    apply,
    applyFresh(t) {
      generation++;
      return apply(t);
    },
    errorLog,
    close,
  };
}

/** How tables reach the test's nginx: rendered (documented), or as data to Lua (dynamic). */
async function deliveryFor(mode: NginxMode, prefix: string, settings: RenderOptions): Promise<TableDelivery> {
  if (mode === 'documented') return documentedDelivery((t, runtime) => renderNginxConf(t, { ...settings, runtime }));
  const lua = await findLuaModules(NGINX_BINARY);
  if (!lua.found) throw new Error(lua.problem);
  return dynamicDelivery({
    render: settings,
    controlSocket: join(prefix, 'control', 'table.sock'),
    luaModules: lua.modules,
    luaDir: bundledLuaDir(),
    timeoutMs: 10_000,
  });
}

export function startProxyFor(options: PairOptions): Promise<ProxyDataPlane> {
  return startProxy({
    port: 0,
    host: '127.0.0.1',
    apiKeyHeader: API_KEY_HEADER,
    upstreamKeepalive: options.upstreamKeepalive ?? 0,
    ...options.clientLimits,
    ...proxyLibraryUnderTest(),
    ...(options.upstreamTimeoutSeconds !== undefined
      ? { upstreamTimeoutMs: options.upstreamTimeoutSeconds * 1000 }
      : {}),
  });
}

/** The three data planes, each on its own port, routing the same table. */
export interface Trio {
  nginx: NginxUnderTest;
  dynamic: NginxPlaneUnderTest;
  proxy: ProxyDataPlane;
}

export async function startTrio(table: RouteTable, options: PairOptions = {}): Promise<Trio> {
  const nginx = await startNginx(table, options);
  let dynamic: NginxPlaneUnderTest | null = null;
  try {
    dynamic = await startDynamic(table, options);
    const proxy = await startProxyFor(options);
    await proxy.apply(table);
    return { nginx, dynamic, proxy };
  } catch (err) {
    await Promise.all([nginx.close(), dynamic?.close()]);
    throw err;
  }
}

export async function closeTrio(trio: Trio): Promise<void> {
  await Promise.all([trio.nginx.close(), trio.dynamic.close(), trio.proxy.close()]);
}

/** Runs `requests` in order through one data plane. */
export async function runSequence(port: number, requests: readonly (RawRequest | Buffer)[]): Promise<Observation[]> {
  const out: Observation[] = [];
  for (const r of requests) out.push(observe(await sendRaw(port, r), port));
  return out;
}

/** Every pod's received list emptied, so a sequence's effects can be compared. */
export function resetPods(pods: readonly TestPod[]): void {
  for (const p of pods) p.received.length = 0;
}

export function describeDifference(label: string, nginx: unknown, other: unknown, otherName = 'proxy'): string {
  const shown = (value: unknown): string => JSON.stringify(value, null, 2);
  return `${label}\n--- nginx ---\n${shown(nginx)}\n--- ${otherName} ---\n${shown(other)}`;
}

/** What each data plane observed, for one comparison. */
export interface ThreeWay<T> {
  nginx: T;
  dynamic: T;
  proxy: T;
}

/** Asserts that dynamic nginx and the proxy observed what documented nginx observed. */
export function assertThreeWay<T>(label: string, observed: ThreeWay<T>): void {
  const { nginx, dynamic, proxy } = observed;
  assert.deepStrictEqual(dynamic, nginx, describeDifference(label, nginx, dynamic, 'dynamic nginx'));
  assert.deepStrictEqual(proxy, nginx, describeDifference(label, nginx, proxy, 'proxy'));
}

/**
 * Both nginx started once; each comparison has them reload (fresh upstream state:
 * round-robin positions and failure marks) and starts a fresh proxy, so a request sequence
 * starts from the same state on every data plane.
 */
export class Differential {
  private constructor(
    readonly nginx: NginxUnderTest,
    readonly dynamic: NginxPlaneUnderTest,
    private readonly options: PairOptions,
  ) {}

  static async start(table: RouteTable, options: PairOptions = {}): Promise<Differential> {
    const nginx = await startNginx(table, options);
    try {
      return new Differential(nginx, await startDynamic(table, options), options);
    } catch (err) {
      await nginx.close();
      throw err;
    }
  }

  async freshProxy(table: RouteTable): Promise<ProxyDataPlane> {
    const proxy = await startProxyFor(this.options);
    await proxy.apply(table);
    return proxy;
  }

  /** The observations of `requests`, in order, through each data plane from a fresh state. */
  async run(table: RouteTable, requests: readonly (RawRequest | Buffer)[]): Promise<ThreeWay<Observation[]>> {
    // The two nginx side by side: each has its own state, and the pods answer each alike.
    const sequence = async (plane: NginxPlaneUnderTest): Promise<Observation[]> => {
      await plane.applyFresh(table);
      return runSequence(plane.port, requests);
    };
    const [nginx, dynamic] = await Promise.all([sequence(this.nginx), sequence(this.dynamic)]);
    const proxyPlane = await this.freshProxy(table);
    try {
      const proxy = await runSequence(proxyPlane.port, requests);
      return { nginx, dynamic, proxy };
    } finally {
      await proxyPlane.close();
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.nginx.close(), this.dynamic.close()]);
  }
}
