import type { Route, RouteTable } from '../../src/route-table.js';
import { startProxy, type ProxyDataPlane } from '../../proxy/server.js';
import { startNginx, type NginxRunner, type NginxRunnerOptions } from '../support/nginx-runner.js';
import type { ReceivedRequest, TestPod } from '../support/pods.js';
import { sendRaw, type RawOutcome, type RawRequest } from './raw-http.js';

// The differential harness: the same table and the same requests through real nginx
// and through the in-process proxy, reduced to what must agree.

export const API_KEY_HEADER = 'X-ROUTING-API-KEY';

export interface RouteSpec {
  host: string;
  path: string;
  pods: readonly { name: string; ip: string; port: number }[];
  apiKey?: string | null;
}

export function tableOf(specs: readonly RouteSpec[]): RouteTable {
  const routes: Route[] = specs.map((s) => ({
    host: s.host,
    path: s.path,
    namespace: 'default',
    apiKey: s.apiKey ?? null,
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
          .sort(([a, va], [b, vb]) => (a.toLowerCase() < b.toLowerCase() ? -1 : a.toLowerCase() > b.toLowerCase() ? 1 : va < vb ? -1 : va > vb ? 1 : 0)),
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

export interface Pair {
  nginx: NginxRunner;
  proxy: ProxyDataPlane;
}

export interface PairOptions {
  /** Upstream timeout on both sides, in seconds (nginx takes whole seconds here). */
  upstreamTimeoutSeconds?: number;
}

export async function startPair(table: RouteTable, options: PairOptions = {}): Promise<Pair> {
  const nginxOptions: NginxRunnerOptions = { apiKeyHeader: API_KEY_HEADER };
  if (options.upstreamTimeoutSeconds !== undefined) {
    const s = options.upstreamTimeoutSeconds;
    nginxOptions.httpDirectives = [`proxy_connect_timeout ${s}s;`, `proxy_send_timeout ${s}s;`, `proxy_read_timeout ${s}s;`];
  }
  const nginx = await startNginx(table, nginxOptions);
  try {
    const proxy = await startProxy({
      port: 0,
      host: '127.0.0.1',
      apiKeyHeader: API_KEY_HEADER,
      ...(options.upstreamTimeoutSeconds !== undefined ? { upstreamTimeoutMs: options.upstreamTimeoutSeconds * 1000 } : {}),
    });
    await proxy.apply(table);
    return { nginx, proxy };
  } catch (err) {
    await nginx.close();
    throw err;
  }
}

export async function closePair(pair: Pair): Promise<void> {
  await Promise.all([pair.nginx.close(), pair.proxy.close()]);
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

export function describeDifference(label: string, nginx: unknown, proxy: unknown): string {
  return `${label}\n--- nginx ---\n${JSON.stringify(nginx, null, 2)}\n--- proxy ---\n${JSON.stringify(proxy, null, 2)}`;
}

/**
 * nginx started once; each comparison reloads it (fresh upstream state: round-robin
 * positions and failure marks) and starts a fresh proxy, so a request sequence starts
 * from the same state on both sides.
 */
export class Differential {
  private constructor(
    readonly nginx: NginxRunner,
    private readonly options: PairOptions,
  ) {}

  static async start(table: RouteTable, options: PairOptions = {}): Promise<Differential> {
    const nginxOptions: NginxRunnerOptions = { apiKeyHeader: API_KEY_HEADER };
    if (options.upstreamTimeoutSeconds !== undefined) {
      const s = options.upstreamTimeoutSeconds;
      nginxOptions.httpDirectives = [`proxy_connect_timeout ${s}s;`, `proxy_send_timeout ${s}s;`, `proxy_read_timeout ${s}s;`];
    }
    return new Differential(await startNginx(table, nginxOptions), options);
  }

  async freshProxy(table: RouteTable): Promise<ProxyDataPlane> {
    const proxy = await startProxy({
      port: 0,
      host: '127.0.0.1',
      apiKeyHeader: API_KEY_HEADER,
      ...(this.options.upstreamTimeoutSeconds !== undefined ? { upstreamTimeoutMs: this.options.upstreamTimeoutSeconds * 1000 } : {}),
    });
    await proxy.apply(table);
    return proxy;
  }

  /** The observations of `requests`, in order, through each data plane from a fresh state. */
  async run(table: RouteTable, requests: readonly (RawRequest | Buffer)[]): Promise<{ nginx: Observation[]; proxy: Observation[] }> {
    await this.nginx.apply(table);
    const nginx = await runSequence(this.nginx.port, requests);
    const proxyPlane = await this.freshProxy(table);
    try {
      const proxy = await runSequence(proxyPlane.port, requests);
      return { nginx, proxy };
    } finally {
      await proxyPlane.close();
    }
  }

  close(): Promise<void> {
    return this.nginx.close();
  }
}
