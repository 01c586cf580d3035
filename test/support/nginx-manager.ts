import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { Agent, createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig, type RouterConfig } from '../../src/core/config.js';
import { buildRouteTable, type RouteTable } from '../../src/core/route-table.js';
import { createNginxDataPlane, type NginxDataPlane, type NginxDataPlaneOptions } from '../../nginx/process.js';
import { renderNginxConf } from '../../nginx/render.js';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { NGINX_BINARY } from './nginx-check.js';
import { pod } from './objects.js';

// The nginx manager as the tests drive it: a real nginx on loopback high ports, run in a
// temp prefix, proxying to tiny Node servers on 127.0.0.x that answer with their name.

export const HOST = 'app.test';

/** Things to undo after a test, last first. */
export class Cleanups {
  private readonly jobs: Array<() => Promise<void>> = [];
  add(job: () => Promise<void>): void {
    this.jobs.push(job);
  }
  async run(): Promise<void> {
    for (const job of this.jobs.splice(0).reverse()) await job();
  }
}

export interface FakePod {
  name: string;
  ip: string;
  port: number;
  server: Server;
}

export async function startNamedPod(cleanups: Cleanups, name: string, ip: string): Promise<FakePod> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(name));
  });
  await new Promise<void>((resolve) => server.listen(0, ip, resolve));
  const address = server.address();
  assert.ok(typeof address === 'object' && address !== null);
  cleanups.add(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return { name, ip, port: address.port, server };
}

export function tableFor(config: RouterConfig, pods: FakePod[]): RouteTable {
  const objects = pods.map((p) => pod(p.name, { ip: p.ip, hosts: HOST, paths: `${p.port}:/`, ports: [p.port] }));
  return buildRouteTable(config, objects, []);
}

export interface Router {
  nginx: NginxDataPlane;
  config: RouterConfig;
  port: number;
  prefix: string;
}

export type Render = NginxDataPlaneOptions['render'];

/** `renderWith` makes the render function once the routing port is known; the real renderer by default. */
export async function startManager(
  cleanups: Cleanups,
  overrides: Partial<NginxDataPlaneOptions> = {},
  renderWith?: (config: RouterConfig) => Render,
): Promise<Router> {
  const prefix = await mkdtemp(join(tmpdir(), 'k8s-router-nginx-process-'));
  // nginx's workers run as nobody and must reach their temp directories under the prefix.
  await chmod(prefix, 0o755);
  const port = await pickFreeLoopbackPort();
  const config = defaultConfig({ port: String(port), listenAddress: '127.0.0.1' });
  const nginx = createNginxDataPlane({
    nginxBinary: NGINX_BINARY,
    prefix,
    render: renderWith ? renderWith(config) : (table, runtime) => renderNginxConf(table, { ...config, runtime }),
    stopTimeouts: { gracefulMs: 5_000, fastMs: 2_000 },
    ...overrides,
  });
  cleanups.add(async () => {
    await nginx.close();
    await rm(prefix, { recursive: true, force: true });
  });
  return { nginx, config, port, prefix };
}

export interface Reply {
  status: number;
  body: string;
  /** Set when the request went out on a kept-alive connection the server had closed, and was sent again. */
  retried?: boolean;
}

class ClosedIdleConnection extends Error {}

function getOnce(port: number, options: { host?: string; path?: string; agent?: Agent }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: options.path ?? '/',
        headers: { host: options.host ?? HOST },
        agent: options.agent ?? false,
        timeout: 5_000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', (err: NodeJS.ErrnoException) => {
      // A server may close an idle kept-alive connection just as the next request is sent
      // on it (nginx does so for every idle connection when old workers shut down after a
      // reload). The request was never accepted; RFC 9112 9.3.1 lets a client send an
      // idempotent one again. Any other failure is a lost request.
      const neverAccepted = req.reusedSocket && err.code === 'ECONNRESET';
      reject(neverAccepted ? new ClosedIdleConnection(err.message) : err);
    });
    req.end();
  });
}

/** GET; sends again (once) only a request that a closed idle kept-alive connection never took. */
export async function get(port: number, options: { host?: string; path?: string; agent?: Agent } = {}): Promise<Reply> {
  try {
    return await getOnce(port, options);
  } catch (err) {
    if (!(err instanceof ClosedIdleConnection)) throw err;
    return { ...(await getOnce(port, { ...options, agent: undefined })), retried: true };
  }
}

export function statusPortOf(conf: string): number {
  return Number(/^listen 127\.0\.0\.1:([0-9]+);$/m.exec(conf)?.[1]);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
