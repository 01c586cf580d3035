import type { Route, RouteTable } from '../src/core/route-table.js';

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

type RouteMatch = Extract<Match, { kind: 'route' }>;
type RedirectMatch = Extract<Match, { kind: 'redirect' }>;

const UNKNOWN_HOST: Match = { kind: 'unknownHost' };
const NOT_FOUND: Match = { kind: 'notFound' };

/** Up to this many paths on a host, trying each prefix beats looking up each prefix length. */
const SCAN_LIMIT = 8;

interface HostRoutes {
  /** Longest path first, so the first prefix that matches is the longest. */
  byLength: RouteMatch[];
  byPath: Map<string, RouteMatch>;
  /** The distinct path lengths, longest first (hosts with many paths). */
  lengths: number[];
  /** Path without its trailing "/" → the redirect to the route (when no route has that path). */
  redirects: Map<string, RedirectMatch>;
}

export class RouteMatcher {
  private readonly hosts: Map<string, HostRoutes>;

  constructor(table: RouteTable) {
    const hosts = new Map<string, HostRoutes>();
    for (const route of table.routes) {
      let entry = hosts.get(route.host);
      if (entry === undefined) {
        entry = { byLength: [], byPath: new Map(), lengths: [], redirects: new Map() };
        hosts.set(route.host, entry);
      }
      const match: RouteMatch = { kind: 'route', route };
      entry.byLength.push(match);
      entry.byPath.set(route.path, match);
    }
    for (const entry of hosts.values()) {
      entry.byLength.sort((a, b) => b.route.path.length - a.route.path.length);
      entry.lengths = [...new Set(entry.byLength.map((m) => m.route.path.length))];
      for (const { route } of entry.byLength) {
        const bare = route.path.slice(0, -1);
        if (route.path.endsWith('/') && !entry.byPath.has(bare)) entry.redirects.set(bare, { kind: 'redirect', route, location: route.path });
      }
    }
    this.hosts = hosts;
  }

  /** `host` as normalizeHost returns it, `path` as normalizePath returns it. Allocates nothing. */
  match(host: string, path: string): Match {
    const entry = this.hosts.get(host);
    if (entry === undefined) return UNKNOWN_HOST;
    if (entry.redirects.size > 0) {
      const redirect = entry.redirects.get(path);
      if (redirect !== undefined) return redirect;
    }
    if (entry.byLength.length <= SCAN_LIMIT) {
      for (const match of entry.byLength) {
        if (path.startsWith(match.route.path)) return match;
      }
      return NOT_FOUND;
    }
    for (const length of entry.lengths) {
      if (length > path.length) continue;
      const match = entry.byPath.get(length === path.length ? path : path.slice(0, length));
      if (match !== undefined) return match;
    }
    return NOT_FOUND;
  }
}
