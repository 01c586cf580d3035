import { podTarget } from '../src/core/pod-target.js';
import type { Route, RouteTable } from '../src/core/route-table.js';
import { clientDirectives, type ClientLimits } from './client-directives.js';
import { fnv1a32, serverNamesHashSizes, type ServerNamesHashSizes } from './hash.js';
import { headerVariable, nginxComment, nginxQuoted, nginxWord } from './syntax.js';

// Renders the documented nginx.conf (see the README, "nginx.conf"). Lines are not
// indented, exactly as in the documented examples, so the seed's examples compare
// byte for byte. Everything taken from the route table goes through nginxWord or
// nginxComment.

export interface RenderOptions extends ClientLimits {
  port: number;
  /** "*" for nginx's default (every IPv4 address), else one IP address. */
  listenAddress: string;
  apiKeyHeader: string;
  /**
   * Idle connections nginx keeps open to each upstream (its `keepalive N`). 0 or absent:
   * the documented config, a new connection to the pod per request.
   */
  upstreamKeepalive?: number;
  /** nginx's worker_processes; 1 or absent, nginx's own default, writes no directive. */
  workerProcesses?: number | 'auto';
  /**
   * nginx's worker_shutdown_timeout in ms: how long old workers may outlive a reload for the
   * connections they still hold. 'off' or absent, nginx's default (no limit), writes no directive.
   */
  workerShutdownTimeoutMs?: number | 'off';
  /** Set when the router runs nginx itself; absent, the documented config is printed. */
  runtime?: NginxRuntime;
}

/**
 * Where a managed nginx keeps its files. The documented config relies on the paths
 * compiled into nginx and on nginx becoming a daemon; a managed nginx runs in the
 * foreground as our child, and several routers side by side must not share files.
 */
export interface NginxRuntime {
  pidFile: string;
  errorLog: string;
  accessLog: string;
  tempDir: string;
  /**
   * The user and group nginx's workers run as, written as `user` when the router (and so
   * nginx's master) runs as root; absent otherwise, where nginx ignores the directive.
   */
  workerUser?: { user: string; group: string };
  /**
   * A server on 127.0.0.1 only that answers `configVersion`, so the manager can read back
   * which config the workers serve and know when a reload took effect.
   */
  status?: NginxStatusServer;
}

export interface NginxStatusServer {
  /** Must differ from the routing port: this server is never a candidate for routed traffic. */
  port: number;
  /** Letters, digits, ".", "_" and "-" only. */
  configVersion: string;
}

/** Where the status server answers with the config version. */
export const CONFIG_VERSION_PATH = '/k8s-router/config-version';

interface Upstream {
  name: string;
  route: Route;
}

/** The argument of `listen`: the port alone for "*", as documented. */
export function listenOn(options: Pick<RenderOptions, 'port' | 'listenAddress'>): string {
  const { port, listenAddress: address } = options;
  if (address === '*') return String(port);
  return nginxWord(address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);
}

const DEFAULT_SERVER = (options: RenderOptions): string[] => [
  '# Default server that will just close the connection as if there was no server available',
  'server {',
  `listen ${listenOn(options)} default_server;`,
  'return 444;',
  '}',
];

/** The main-context directives of the worker settings; none at nginx's defaults, as documented. */
export function workerDirectives(
  options: Pick<RenderOptions, 'workerProcesses' | 'workerShutdownTimeoutMs'>,
): string[] {
  const lines: string[] = [];
  const n = options.workerProcesses;
  if (n !== undefined && n !== 1) {
    if (n !== 'auto' && !(Number.isInteger(n) && n > 1))
      throw new RangeError(`worker processes ${n} is neither "auto" nor a whole number`);
    lines.push(`worker_processes ${n};`);
  }
  const shutdown = options.workerShutdownTimeoutMs;
  if (shutdown !== undefined && shutdown !== 'off') {
    if (!(Number.isInteger(shutdown) && shutdown > 0))
      throw new RangeError(`worker shutdown timeout ${shutdown} is not a whole number of milliseconds`);
    lines.push(`worker_shutdown_timeout ${shutdown}ms;`);
  }
  return lines;
}

/** The main-context lines of a managed nginx: foreground, its own pid file and error log. */
export function runtimeMain(runtime: NginxRuntime): string[] {
  return [
    '# Run by k8s-router: nginx stays in the foreground as its child and keeps its files here',
    'daemon off;',
    ...(runtime.workerUser
      ? [`user ${nginxWord(runtime.workerUser.user)} ${nginxWord(runtime.workerUser.group)};`]
      : []),
    `pid ${nginxWord(runtime.pidFile)};`,
    `error_log ${nginxWord(runtime.errorLog)};`,
  ];
}

function statusServer(status: NginxStatusServer, options: Pick<RenderOptions, 'port'>): string[] {
  const { port, configVersion } = status;
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new RangeError(`status port ${port} is not a port number`);
  // Sharing the routing port would put this server in the routing listen group, where it
  // would answer requests that carry no Host header.
  if (port === options.port) throw new RangeError(`status port ${port} must differ from the routing port`);
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(configVersion))
    throw new RangeError(`config version ${JSON.stringify(configVersion)} is not a plain word`);
  return [
    '# Loopback-only status server: k8s-router reads the config version back to confirm a reload',
    'server {',
    `listen 127.0.0.1:${port};`,
    'access_log off;',
    `location = ${CONFIG_VERSION_PATH} {`,
    'default_type text/plain;',
    // The worker's pid tells the manager which nginx answered: a worker orphaned by a
    // killed master serves the same version, but is no child of the master it started.
    `return 200 "${configVersion} $pid";`,
    '}',
    'location / {',
    'return 404;',
    '}',
    '}',
  ];
}

/** The http-context lines of a managed nginx: its log and temp paths, and the status server. */
export function runtimeHttp(runtime: NginxRuntime, options: Pick<RenderOptions, 'port'>): string[] {
  const temp = (name: string): string => nginxWord(`${runtime.tempDir}/${name}`);
  return [
    `access_log ${nginxWord(runtime.accessLog)};`,
    `client_body_temp_path ${temp('client_body')};`,
    `proxy_temp_path ${temp('proxy')};`,
    `fastcgi_temp_path ${temp('fastcgi')};`,
    `uwsgi_temp_path ${temp('uwsgi')};`,
    `scgi_temp_path ${temp('scgi')};`,
    ...(runtime.status ? statusServer(runtime.status, options) : []),
  ];
}

function emptyConfig(options: RenderOptions): string[] {
  const { runtime } = options;
  return [
    ...(runtime ? runtimeMain(runtime) : []),
    ...workerDirectives(options),
    '# A very simple nginx configuration file that forces nginx to start as a daemon.',
    'events {}',
    'http {',
    ...(runtime ? runtimeHttp(runtime, options) : []),
    ...clientDirectives(options),
    ...DEFAULT_SERVER(options),
    '}',
    ...(runtime ? [] : ['daemon on;']),
  ];
}

const DOCUMENTED_CONNECTION = [
  "# When nginx proxies to an upstream, the default value used for 'Connection' is 'close'. We use this variable to do",
  "# the same thing so that whenever a 'Connection' header is in the request, the variable reflects the provided value",
  '# otherwise, it defaults to \'close\'. This is opposed to just using "proxy_set_header Connection $http_connection"',
  "# which would remove the 'Connection' header from the upstream request whenever the request does not contain a",
  "# 'Connection' header, which is a deviation from the nginx norm.",
  'map $http_connection $p_connection {',
  'default $http_connection;',
  "'' close;",
  '}',
];

/** With upstream keep-alive, a 'Connection: close' would end every kept connection after one request. */
const KEEPALIVE_CONNECTION = [
  "# Upstream connections are kept alive and reused (UPSTREAM_KEEPALIVE): no 'Connection' header goes to the pod,",
  "# so HTTP/1.1 keeps the connection open, except 'Connection: upgrade' when the client asks to switch protocols",
  '# (WebSocket).',
  'map $http_upgrade $p_connection {',
  'default upgrade;',
  "'' '';",
  '}',
];

/** UPSTREAM_KEEPALIVE: how many idle connections to keep per upstream (0: none, the documented config). */
export function keepalive(options: Pick<RenderOptions, 'upstreamKeepalive'>): number {
  const n = options.upstreamKeepalive ?? 0;
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`upstream keepalive ${n} is not a whole number`);
  return n;
}

function preamble(hashMaxSize: number, hashBucketSize: number, options: RenderOptions): string[] {
  const { runtime } = options;
  return [
    ...(runtime ? runtimeMain(runtime) : []),
    ...workerDirectives(options),
    'events {',
    'worker_connections 1024;',
    '}',
    'http {',
    ...(runtime ? runtimeHttp(runtime, options) : []),
    '# http://nginx.org/en/docs/http/ngx_http_core_module.html',
    'types_hash_max_size 2048;',
    `server_names_hash_max_size ${hashMaxSize};`,
    `server_names_hash_bucket_size ${hashBucketSize};`,
    ...proxyHeaders(options),
    ...clientDirectives(options),
  ];
}

/** HTTP/1.1 to the pods and the headers they get: Connection (through a map), Host and Upgrade. */
export function proxyHeaders(options: Pick<RenderOptions, 'upstreamKeepalive'>): string[] {
  return [
    '# Force HTTP 1.1 for upstream requests',
    'proxy_http_version 1.1;',
    ...(keepalive(options) > 0 ? KEEPALIVE_CONNECTION : DOCUMENTED_CONNECTION),
    '# Pass through the appropriate headers',
    'proxy_set_header Connection $p_connection;',
    'proxy_set_header Host $host;',
    'proxy_set_header Upgrade $http_upgrade;',
  ];
}

/** IP:PORT as nginx wants it: IPv6 in brackets, port 80 left out. */
export const target = podTarget;

function podComment(pod: string, namespace: string): string {
  return nginxComment(`# Pod ${pod} (namespace: ${namespace})`);
}

/**
 * Upstream names: "upstream" + FNV-1a of host+path, as documented. FNV collisions are
 * easy to make on purpose, and two upstreams of one name stop nginx from loading the
 * config, so a later route (in host, path order) whose name is taken gets a suffix.
 * A route with one pod has no upstream, unless `everyRoute` (upstream keep-alive lives
 * in upstream blocks).
 */
export function upstreamNames(routes: readonly Route[], everyRoute = false): Map<Route, string> {
  const names = new Map<Route, string>();
  const taken = new Set<string>();
  for (const route of routes) {
    if (!hasUpstream(route, everyRoute)) continue;
    const base = upstreamBaseName(route);
    let name = base;
    for (let n = 2; taken.has(name); n++) name = `${base}_${n}`;
    taken.add(name);
    names.set(route, name);
  }
  return names;
}

/**
 * Whether a route goes through an `upstream` block rather than to its pod directly: with
 * several pods, and with upstream keep-alive (`everyRoute`) always.
 */
export function hasUpstream(route: Route, everyRoute: boolean): boolean {
  return everyRoute || route.backends.length >= 2;
}

/** Whether every route gets an upstream block: with upstream keep-alive, which lives there. */
export function upstreamForEveryRoute(options: RenderOptions): boolean {
  return keepalive(options) > 0;
}

/**
 * The name of a route's upstream before collisions: as names are given in route order,
 * the n-th route (n > 1) of one base name gets `_n` (see upstreamNames).
 */
export function upstreamBaseName(route: Route): string {
  return `upstream${fnv1a32(route.host + route.path)}`;
}

/**
 * The balancing directive of a route's upstream, before its servers: with affinity, the
 * consistent hash of the client address. One pod needs none (nothing to choose from).
 * `keepalive` must come after it, as it wraps the balancer defined before it.
 */
function balancing(route: Route): string {
  return route.affinity === 'ip' && route.backends.length >= 2
    ? '# Session affinity: each client address keeps to one pod (consistent hashing)\nhash $remote_addr consistent;\n'
    : '';
}

function upstreamBlock({ name, route }: Upstream, keepaliveConnections: number): string {
  let text = `${nginxComment(`# Upstream for ${route.path} traffic on ${route.host}`)}\nupstream ${name} {\n`;
  text += balancing(route);
  for (const b of route.backends)
    text += `${podComment(b.pod, b.namespace)}\nserver ${nginxWord(target(b.ip, b.port))};\n`;
  if (keepaliveConnections > 0) text += `keepalive ${keepaliveConnections};\n`;
  return `${text}}`;
}

/** The directives that check a request's API key, from the header it is in. */
function keyCheck(header: string, route: Route & { apiKey: string }): string {
  const comment = nginxComment(`# API key required by Secret of namespace ${route.namespace}`);
  return `${comment}\nif (${header} != ${nginxQuoted(route.apiKey)}) {\nreturn 403;\n}\n`;
}

function locationBlock(route: Route, upstream: string | undefined, header: string): string {
  let text = `location ${nginxWord(route.path)} {\n`;
  if (route.apiKey !== null) text += keyCheck(header, route as Route & { apiKey: string });
  const only = route.backends[0];
  if (upstream !== undefined) {
    text += `# Upstream ${upstream}\nproxy_pass http://${upstream};\n`;
  } else if (only !== undefined) {
    text += `${podComment(only.pod, only.namespace)}\nproxy_pass http://${nginxWord(target(only.ip, only.port))};\n`;
  }
  return `${text}}`;
}

/** The lines every server block starts with but its name, which depend only on the options. */
const serverStarts = new WeakMap<RenderOptions, { listen: string; header: string }>();

function serverStart(options: RenderOptions): { listen: string; header: string } {
  let start = serverStarts.get(options);
  if (start === undefined) {
    start = {
      listen: `server {\nlisten ${listenOn(options)};\nserver_name `,
      header: headerVariable(options.apiKeyHeader),
    };
    serverStarts.set(options, start);
  }
  return start;
}

function serverBlock(
  host: string,
  routes: readonly Route[],
  upstreams: Map<Route, string>,
  options: RenderOptions,
): string {
  const { listen, header } = serverStart(options);
  // Built as one string rather than joined lines: 20,000 hosts are rendered at once.
  let text = `${listen}${nginxWord(host)};\n`;
  if (!routes.some((r) => r.path === '/')) {
    text +=
      '# No pod serves / on this host: answer 404 rather than the nginx welcome page\nlocation / {\nreturn 404;\n}\n';
  }
  for (const route of routes) text += `${locationBlock(route, upstreams.get(route), header)}\n`;
  return `${text}}`;
}

/** The nginx.conf for a route table. Deterministic: the table is already sorted. */
export function renderNginxConf(table: RouteTable, options: RenderOptions): string {
  if (table.routes.length === 0) return emptyConfText(options);

  const byHost = new Map<string, Route[]>();
  for (const route of table.routes) {
    const list = byHost.get(route.host);
    if (list === undefined) byHost.set(route.host, [route]);
    else list.push(route);
  }
  const hashSizes = serverNamesHashSizes([...byHost.keys()]);
  const upstreams = upstreamNames(table.routes, upstreamForEveryRoute(options));
  return assembleConf(
    headText(hashSizes, options),
    [
      ...[...upstreams].map(([route, name]) => upstreamText(route, name, options)),
      ...[...byHost].map(([host, routes]) => serverText(host, routes, upstreams, options)),
    ].join('\n'),
    options,
  );
}

// The parts of a config with routes, as text, for nginx/incremental-render.ts to keep
// and reuse: a block's text depends only on its arguments.

/** The config of a table without routes. */
export function emptyConfText(options: RenderOptions): string {
  return `${emptyConfig(options).join('\n')}\n`;
}

/** Everything before the first upstream or server block. */
export function headText(hashSizes: ServerNamesHashSizes, options: RenderOptions): string {
  return preamble(hashSizes.maxSize, hashSizes.bucketSize, options).join('\n');
}

/** The upstream block of a route. */
export function upstreamText(route: Route, name: string, options: RenderOptions): string {
  return upstreamBlock({ name, route }, keepalive(options));
}

/** The server block of a host, given its routes in table order and the upstream names. */
export function serverText(
  host: string,
  routes: readonly Route[],
  upstreams: Map<Route, string>,
  options: RenderOptions,
): string {
  return serverBlock(host, routes, upstreams, options);
}

/** Everything after the last upstream or server block. */
export function tailText(options: RenderOptions): string {
  return `${[...DEFAULT_SERVER(options), '}'].join('\n')}\n`;
}

/** The config from its head and its upstream and server blocks joined by newlines. */
export function assembleConf(head: string, blocks: string, options: RenderOptions): string {
  // Concatenated, not joined: a join would copy the megabytes of blocks once more.
  return `${head}\n${blocks}\n${tailText(options)}`;
}
