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

interface HostRoutes {
  /** Longest path first, so the first prefix that matches is the longest. */
  byLength: Route[];
  byPath: Map<string, Route>;
}

export class RouteMatcher {
  private readonly hosts: Map<string, HostRoutes>;

  constructor(table: RouteTable) {
    const hosts = new Map<string, HostRoutes>();
    for (const route of table.routes) {
      let entry = hosts.get(route.host);
      if (entry === undefined) {
        entry = { byLength: [], byPath: new Map() };
        hosts.set(route.host, entry);
      }
      entry.byLength.push(route);
      entry.byPath.set(route.path, route);
    }
    for (const entry of hosts.values()) entry.byLength.sort((a, b) => b.path.length - a.path.length);
    this.hosts = hosts;
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
