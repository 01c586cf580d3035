import type { Route, RouteTable } from '../src/core/route-table.js';
import { runNow } from '../src/core/time-slices.js';

// Route lookup as nginx does it with one `server` per host and one prefix `location` per
// route path: the longest prefix of the normalized path wins, compared byte for byte and
// case-sensitively, and "/nodejs" matches "/nodejsfoo". A host without a "/" route has a
// `location / { return 404; }` in the rendered config, hence "notFound".

export type Match =
  | { kind: 'unknownHost' }
  | { kind: 'route'; route: Route }
  /**
   * nginx's auto-redirect: a location ending in "/" that proxies answers a request for
   * the same path without the slash with 301 to the slashed path (unless another
   * location is exactly that path). `location` is the route path.
   */
  | { kind: 'redirect'; route: Route; location: string }
  | { kind: 'notFound' };

interface HostRoutes {
  /** In table order: a host whose routes are the same objects reuses its entry. */
  routes: Route[];
  /** Longest path first, so the first prefix that matches is the longest. */
  byLength: Route[];
  byPath: Map<string, Route>;
}

/** How many routes between two points where a build may pause. */
const STEP = 1024;

function newEntry(routes: Route[]): HostRoutes {
  const byPath = new Map<string, Route>();
  for (const route of routes) byPath.set(route.path, route);
  return { routes, byLength: [...routes].sort((a, b) => b.path.length - a.path.length), byPath };
}

function sameRoutes(kept: readonly Route[], routes: readonly Route[], from: number, to: number): boolean {
  if (kept.length !== to - from) return false;
  for (let i = from; i < to; i++) if (kept[i - from] !== routes[i]) return false;
  return true;
}

/**
 * The entry of every host, reusing `previous`'s for a host whose routes are the very
 * objects it had (the incremental route table keeps unchanged routes), yielding now and
 * then so that a caller may pause.
 */
function* hostEntries(routes: readonly Route[], previous: ReadonlyMap<string, HostRoutes> | undefined): Generator<void, Map<string, HostRoutes>, void> {
  const hosts = new Map<string, HostRoutes>();
  let i = 0;
  let next = STEP;
  while (i < routes.length) {
    if (i >= next) {
      next = i + STEP;
      yield;
    }
    const host = (routes[i] as Route).host;
    let end = i + 1;
    while (end < routes.length && (routes[end] as Route).host === host) end++;
    const seen = hosts.get(host);
    if (seen !== undefined) {
      // The routes of a host are apart: not a sorted table. Build without shortcuts.
      hosts.set(host, newEntry([...seen.routes, ...routes.slice(i, end)]));
    } else {
      const old = previous?.get(host);
      hosts.set(host, old !== undefined && sameRoutes(old.routes, routes, i, end) ? old : newEntry(routes.slice(i, end)));
    }
    i = end;
  }
  return hosts;
}

export class RouteMatcher {
  private readonly hosts: Map<string, HostRoutes>;

  /** The matcher for `table`, reusing what `previous` built for hosts whose routes did not change. */
  constructor(table: RouteTable, previous?: RouteMatcher) {
    this.hosts = runNow(hostEntries(table.routes, previous?.hosts));
  }

  /** What the constructor does, as steps a caller may pause between: big tables take a while. */
  static *building(table: RouteTable, previous?: RouteMatcher): Generator<void, RouteMatcher, void> {
    const hosts = yield* hostEntries(table.routes, previous?.hosts);
    return Object.assign(Object.create(RouteMatcher.prototype) as RouteMatcher, { hosts });
  }

  /** `host` as normalizeHost returns it, `path` as normalizePath returns it. */
  match(host: string, path: string): Match {
    const entry = this.hosts.get(host);
    if (entry === undefined) return { kind: 'unknownHost' };
    if (!entry.byPath.has(path)) {
      const slashed = entry.byPath.get(`${path}/`);
      if (slashed !== undefined) return { kind: 'redirect', route: slashed, location: slashed.path };
    }
    for (const route of entry.byLength) {
      if (path.startsWith(route.path)) return { kind: 'route', route };
    }
    return { kind: 'notFound' };
  }
}
