import { readFileSync } from 'node:fs';
import http from 'node:http';

// What every bare contestant does before it proxies: the host of the request (lower
// case, port removed), the longest route prefix of its path on that host, and the next
// pod of that route in turn. No URI normalization, no API keys, none of nginx's answers:
// the least a router can do, so the contestants measure the proxy libraries.

export interface Pod {
  ip: string;
  port: number;
}

interface BenchRoute {
  path: string;
  pods: Pod[];
  next: number;
}

/** The routes file the benchmark writes: [{ host, path, backends: [{ ip, port }] }]. */
export function loadRoutes(file: string): (host: string | undefined, url: string | undefined) => Pod | null {
  const table = JSON.parse(readFileSync(file, 'utf8')) as { host: string; path: string; backends: Pod[] }[];
  const byHost = new Map<string, BenchRoute[]>();
  for (const r of table) {
    const routes = byHost.get(r.host) ?? [];
    routes.push({ path: r.path, pods: r.backends.map(({ ip, port }) => ({ ip, port })), next: 0 });
    byHost.set(r.host, routes);
  }
  for (const routes of byHost.values()) routes.sort((a, b) => b.path.length - a.path.length);

  return (hostHeader, url) => {
    if (hostHeader === undefined || url === undefined) return null;
    const colon = hostHeader.indexOf(':');
    const routes = byHost.get((colon < 0 ? hostHeader : hostHeader.slice(0, colon)).toLowerCase());
    if (routes === undefined) return null;
    for (const route of routes) {
      if (!url.startsWith(route.path)) continue;
      const pod = route.pods[route.next] as Pod;
      route.next = (route.next + 1) % route.pods.length;
      return pod;
    }
    return null;
  };
}

/** `node ... CONTESTANT.ts ROUTES_FILE PORT`: the arguments every contestant takes. */
export function contestantArgs(): { routes: ReturnType<typeof loadRoutes>; port: number } {
  const [file, port] = process.argv.slice(2);
  if (file === undefined || port === undefined) throw new Error('usage: CONTESTANT ROUTES_FILE PORT');
  return { routes: loadRoutes(file), port: Number(port) };
}

/** Idle connections kept per pod, as the router's UPSTREAM_KEEPALIVE in the benchmark. */
export const KEEPALIVE = 32;

/** Pod connections for a bare contestant built on Node's http client. */
export const keepAliveAgent = (): http.Agent => new http.Agent({ keepAlive: true, maxFreeSockets: KEEPALIVE });

/** A proxy library's ProxyServer, as the bare contestants use it (http-proxy and http-proxy-3 alike). */
interface LibraryProxy {
  web(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    options: { target: { host: string; port: number; protocol: string } },
  ): void;
  /** Its error listener's arguments: (err, req, res or the client socket). */
  on(event: 'error', listener: never): unknown;
}

/** Serves the arguments' port: each request to `forward` with its pod, 404 without one. */
export function serveRoutes(forward: (req: http.IncomingMessage, res: http.ServerResponse, pod: Pod) => void): void {
  const { routes, port } = contestantArgs();
  http
    .createServer((req, res) => {
      const pod = routes(req.headers.host, req.url);
      if (pod === null) res.writeHead(404).end();
      else forward(req, res, pod);
    })
    .listen(port, '127.0.0.1');
}

/** Answers a request whose pod failed: 502 while nothing was sent, else the connection is cut. */
export function failed(res: http.ServerResponse | { destroy(): void }): void {
  if (res instanceof http.ServerResponse && !res.headersSent) res.writeHead(502).end();
  else res.destroy();
}

/** Serves the arguments' port: each request to its pod through `proxy`, 404 without one, 502 on errors. */
export function serveThrough(proxy: LibraryProxy): void {
  proxy.on('error', ((_err: Error, _req: unknown, res: http.ServerResponse | { destroy(): void }) =>
    failed(res)) as never);
  serveRoutes((req, res, pod) => proxy.web(req, res, { target: { host: pod.ip, port: pod.port, protocol: 'http:' } }));
}
