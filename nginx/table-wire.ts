import { isIP } from 'node:net';
import { hostProblem, pathProblem } from '../src/core/annotations.js';
import { dnsLabelProblem, dnsSubdomainProblem } from '../src/core/kube-names.js';
import { compareRoutes, type PodEndpoint, type Route, type RouteTable } from '../src/core/route-table.js';

// The route table as the text dynamic nginx reads (nginx/lua/k8s_router/wire.lua parses
// it with plain string searches: no JSON library ships with Debian's Lua module, and data
// is never run as code). One line per route, fields split by tabs, backends by spaces:
//
//   k8s-router-table 1 VERSION ROUTES
//   HOST <tab> PATH <tab> KEY or - <tab> rr or ip <tab> IP,PORT,NAMESPACE,POD IP,PORT,...
//   end VERSION
//
// A table that differs from one nginx holds (BASE) can go as a delta, which nginx applies
// to that table: the lines of the routes added or changed, as above, and one line per route
// removed. ROUTES counts the routes of the table it leaves.
//
//   k8s-router-delta 1 BASE VERSION ROUTES
//   HOST <tab> PATH <tab> KEY or - <tab> rr or ip <tab> IP,PORT,NAMESPACE,POD IP,PORT,...
//   - <tab> HOST <tab> PATH
//   end VERSION
//
// Everything written is checked first, with the rules the route table applies to what it
// accepts, so that a value Lua would misread, or nginx could not serve, never leaves the
// router: a mistake upstream of here throws TableWireError instead of reaching nginx.

export const WIRE_HEADER = 'k8s-router-table 1';
export const DELTA_HEADER = 'k8s-router-delta 1';

/**
 * The largest table text sent. The shared dict holds the new text beside the old one
 * while a table replaces another, each in pages of its own, so two of them stay well
 * within TABLE_DICT_BYTES.
 */
export const MAX_TABLE_BYTES = 24 * 1024 * 1024;

/**
 * The largest delta sent: nginx refuses a bigger one (413) and keeps the last 16 for
 * workers that are behind (nginx/lua/k8s_router/state.lua's MAX_DELTA_BYTES).
 */
export const MAX_DELTA_BYTES = 256 * 1024;

/** The size of the shared dict that holds the table: two tables, 16 deltas and the workers' reports. */
export const TABLE_DICT_BYTES = 64 * 1024 * 1024;

/** A version names a table on the wire and in the workers' reports: a plain word. */
const VERSION = /^[A-Za-z0-9._-]{1,64}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export type TableWireErrorCode =
  | 'BAD_VERSION'
  | 'BAD_HOST'
  | 'BAD_PATH'
  | 'BAD_API_KEY'
  | 'BAD_AFFINITY'
  | 'BAD_BACKEND'
  | 'NO_BACKENDS'
  | 'DUPLICATE_ROUTE'
  | 'TOO_LARGE';

export class TableWireError extends Error {
  constructor(
    readonly code: TableWireErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TableWireError';
  }
}

export type Affinity = 'rr' | 'ip';

/** The balancing of a route: round robin, or `ip` (a client address stays on one pod). */
export function affinityOf(route: Route): Affinity {
  // Typed 'ip' | null; a table built elsewhere (or a future value) is checked all the same.
  const affinity = route.affinity as unknown;
  if (affinity === null) return 'rr';
  if (affinity === 'ip') return 'ip';
  throw new TableWireError(
    'BAD_AFFINITY',
    `route ${describe(route)} has affinity ${JSON.stringify(affinity)}, neither null nor "ip"`,
  );
}

function describe(route: Route): string {
  return JSON.stringify(`${route.host}${route.path}`);
}

/** Why an IP address is not one nginx can connect to as written, or null. */
function ipProblem(ip: string): string | null {
  const family = isIP(ip);
  if (family === 0) return 'is not an IP address';
  // A zone index ("fe80::1%eth0") is not for nginx's address parser.
  if (family === 6 && !/^[0-9A-Fa-f:.]+$/.test(ip)) return 'is not a plain IPv6 address';
  return null;
}

// The route table's objects are never changed once built, and an incremental build keeps
// those of unchanged routes and pods: each is checked and written once, not at every send.
const backendTexts = new WeakMap<PodEndpoint, string>();
const routeLines = new WeakMap<Route, string>();

function backendText(route: Route, backend: PodEndpoint): string {
  const known = backendTexts.get(backend);
  if (known !== undefined) return known;
  const fail = (what: string): never => {
    throw new TableWireError(
      'BAD_BACKEND',
      `route ${describe(route)}: pod ${JSON.stringify(`${backend.namespace}/${backend.pod}`)} ${what}`,
    );
  };
  const ip = ipProblem(backend.ip);
  if (ip !== null) fail(`has IP ${JSON.stringify(backend.ip)}, which ${ip}`);
  if (!Number.isInteger(backend.port) || backend.port < 1 || backend.port > 65535)
    fail(`has port ${backend.port}, not 1 to 65535`);
  const pod = dnsSubdomainProblem(backend.pod);
  if (pod !== null) fail(`has a name that ${pod}`);
  const namespace = dnsLabelProblem(backend.namespace);
  if (namespace !== null) fail(`has a namespace name that ${namespace}`);
  const text = `${backend.ip},${backend.port},${backend.namespace},${backend.pod}`;
  backendTexts.set(backend, text);
  return text;
}

function routeLine(route: Route): string {
  const known = routeLines.get(route);
  if (known !== undefined) return known;
  const host = hostProblem(route.host);
  if (host !== null || route.host !== route.host.toLowerCase()) {
    throw new TableWireError(
      'BAD_HOST',
      `route ${describe(route)}: host ${JSON.stringify(route.host)} ${host ?? 'is not lower case'}`,
    );
  }
  const path = pathProblem(route.path);
  if (path !== null)
    throw new TableWireError('BAD_PATH', `route ${describe(route)}: path ${JSON.stringify(route.path)} ${path}`);
  const key = route.apiKey;
  // The key itself is never part of a message: it is a secret.
  if (key !== null && (key === '' || !BASE64.test(key)))
    throw new TableWireError('BAD_API_KEY', `route ${describe(route)}: the API key is not base64 text`);
  if (route.backends.length === 0) throw new TableWireError('NO_BACKENDS', `route ${describe(route)} has no pods`);
  const backends = route.backends.map((b) => backendText(route, b)).join(' ');
  const line = `${route.host}\t${route.path}\t${key ?? '-'}\t${affinityOf(route)}\t${backends}\n`;
  routeLines.set(route, line);
  return line;
}

function checkVersion(version: string): void {
  if (!VERSION.test(version))
    throw new TableWireError('BAD_VERSION', `table version ${JSON.stringify(version)} is not a plain word`);
}

/** Bytes of the whole text of a table of `lineBytes` bytes of lines, named `version`. */
function textBytes(lineBytes: number, routes: number, version: string): number {
  return `${WIRE_HEADER} ${version} ${routes}\n`.length + lineBytes + `end ${version}\n`.length;
}

/** A table as it went to nginx: what the next table's delta is made against. */
export interface SentTable {
  readonly table: RouteTable;
  readonly version: string;
  /** The bytes of its route lines. */
  readonly lineBytes: number;
  /** Whether its routes are in compareRoutes order (host, then path), each once, as a route table has them. */
  readonly sorted: boolean;
}

/** A text for nginx, and the table it leaves nginx with. */
export interface WireText {
  text: string;
  sent: SentTable;
}

/**
 * The whole text of `table`, named `version`. Throws TableWireError for anything dynamic
 * nginx could not use: a value outside the route table's grammar, a route twice, a route
 * without pods, or a text over MAX_TABLE_BYTES.
 */
export function wholeTable(table: RouteTable, version: string): WireText {
  checkVersion(version);
  let text = `${WIRE_HEADER} ${version} ${table.routes.length}\n`;
  const start = text.length;
  // A route table comes sorted by host, then path: a route twice is then next to itself, and
  // no set of every route is needed. Another order is checked with one.
  let seen: Set<string> | null = null;
  let previous: Route | null = null;
  for (const [i, route] of table.routes.entries()) {
    if (seen === null && previous !== null && compareRoutes(previous, route) >= 0) {
      seen = new Set(table.routes.slice(0, i).map((r) => `${r.host}\n${r.path}`));
    }
    if (seen !== null) {
      const id = `${route.host}\n${route.path}`;
      if (seen.has(id)) throw new TableWireError('DUPLICATE_ROUTE', `route ${describe(route)} is in the table twice`);
      seen.add(id);
    }
    previous = route;
    text += routeLine(route);
    // Counted as it grows: ASCII only (every field was checked), so characters are bytes.
    if (text.length > MAX_TABLE_BYTES) {
      throw new TableWireError(
        'TOO_LARGE',
        `the table is over ${MAX_TABLE_BYTES} bytes at route ${i + 1} of ${table.routes.length}`,
      );
    }
  }
  const lineBytes = text.length - start;
  text += `end ${version}\n`;
  if (text.length > MAX_TABLE_BYTES)
    throw new TableWireError('TOO_LARGE', `the table is over ${MAX_TABLE_BYTES} bytes`);
  return { text, sent: { table, version, lineBytes, sorted: seen === null } };
}

/** The wire text of `table`, named `version` (wholeTable's). */
export function serializeTable(table: RouteTable, version: string): string {
  return wholeTable(table, version).text;
}

/** The line of a delta that removes `route`. */
function removal(route: Route): string {
  return `-\t${route.host}\t${route.path}\n`;
}

/**
 * The delta that turns the table `base` holds into `next`, named `version`, with every line
 * it writes checked as wholeTable checks it. Made by walking both tables in step: the routes
 * of an incremental build that did not change are the very objects of the last table, so the
 * work beyond a comparison of references is in proportion to the change. Null when the
 * whole table is the better send, or the only one: `next` is not in route table order (the
 * whole text's checks then say what is wrong), the delta would be larger than the whole
 * text or MAX_DELTA_BYTES, or the table over MAX_TABLE_BYTES.
 */
export function deltaTo(base: SentTable, next: RouteTable, version: string): WireText | null {
  checkVersion(version);
  if (!base.sorted || base.version === version) return null;
  const before = base.table.routes;
  const after = next.routes;
  let body = '';
  let lineBytes = base.lineBytes;
  let i = 0;
  let j = 0;
  // The last route of `next` walked, and whether it was new: two routes of `base` in step
  // are in order already, any other pair is compared.
  let previous: Route | null = null;
  let previousNew = false;
  while (i < before.length || j < after.length) {
    const a = before[i];
    const b = after[j];
    const order = a === undefined ? 1 : b === undefined ? -1 : a === b ? 0 : compareRoutes(a, b);
    if (order < 0) {
      body += removal(a as Route);
      lineBytes -= routeLine(a as Route).length;
      i++;
      continue;
    }
    const route = b as Route;
    if (previous !== null && (previousNew || a !== b) && compareRoutes(previous, route) >= 0) return null;
    previousNew = a !== b;
    previous = route;
    j++;
    if (order === 0) i++;
    if (a === b) continue;
    const line = routeLine(route);
    const old = order === 0 ? routeLine(a as Route) : '';
    if (line !== old) body += line;
    lineBytes += line.length - old.length;
    if (body.length > MAX_DELTA_BYTES) return null;
  }
  const wholeBytes = textBytes(lineBytes, after.length, version);
  const text = `${DELTA_HEADER} ${base.version} ${version} ${after.length}\n${body}end ${version}\n`;
  if (wholeBytes > MAX_TABLE_BYTES || text.length > Math.min(MAX_DELTA_BYTES, wholeBytes)) return null;
  return { text, sent: { table: next, version, lineBytes, sorted: true } };
}
