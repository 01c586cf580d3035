import { compareRoutes, type Route, type RouteTable } from '../src/core/route-table.js';
import { changesUpTo } from '../src/core/sorted-changes.js';
import { runNow, type Steps } from '../src/core/time-slices.js';

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
  /** In table order: a host whose routes are the same objects reuses its entry. */
  routes: Route[];
  /** Longest path first, so the first prefix that matches is the longest. */
  byLength: RouteMatch[];
  byPath: Map<string, RouteMatch>;
  /** The distinct path lengths, longest first (hosts with many paths). */
  lengths: number[];
  /** Path without its trailing "/" → the redirect to the route (when no route has that path). */
  redirects: Map<string, RedirectMatch>;
}

/** How many routes between two points where a build may pause. */
const STEP = 256;

function newEntry(routes: Route[]): HostRoutes {
  const entry: HostRoutes = { routes, byLength: [], byPath: new Map(), lengths: [], redirects: new Map() };
  for (const route of routes) {
    const match: RouteMatch = { kind: 'route', route };
    entry.byLength.push(match);
    entry.byPath.set(route.path, match);
  }
  entry.byLength.sort((a, b) => b.route.path.length - a.route.path.length);
  entry.lengths = [...new Set(entry.byLength.map((m) => m.route.path.length))];
  for (const { route } of entry.byLength) {
    const bare = route.path.slice(0, -1);
    if (route.path.endsWith('/') && !entry.byPath.has(bare))
      entry.redirects.set(bare, { kind: 'redirect', route, location: route.path });
  }
  return entry;
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
function* hostEntries(
  routes: readonly Route[],
  previous: ReadonlyMap<string, HostRoutes> | undefined,
): Steps<Map<string, HostRoutes>> {
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
      hosts.set(
        host,
        old !== undefined && sameRoutes(old.routes, routes, i, end) ? old : newEntry(routes.slice(i, end)),
      );
    }
    i = end;
  }
  return hosts;
}

/** Up to this many changed routes, a matcher is updated in place rather than built anew. */
const IN_PLACE_LIMIT = 2048;
const NO_ROUTES: RouteTable = { routes: [], rejections: [] };

/**
 * Matches requests to the routes of a table. A new table is usually the last one with a
 * few routes changed (the incremental route table keeps the others' objects): next() and
 * preparing() then update the hosts that changed, in place, and the matcher they started
 * from must not be used any more; more changes build a new one, reusing the entries of
 * hosts whose routes did not change.
 */
export class RouteMatcher {
  private hosts: Map<string, HostRoutes>;
  private routes: readonly Route[];
  private superseded = false;

  constructor(table: RouteTable) {
    this.hosts = runNow(hostEntries(table.routes, undefined));
    this.routes = table.routes;
  }

  private static of(hosts: Map<string, HostRoutes>, routes: readonly Route[]): RouteMatcher {
    const matcher = new RouteMatcher(NO_ROUTES);
    matcher.hosts = hosts;
    matcher.routes = routes;
    return matcher;
  }

  /** The matcher for `table`, made from this one; use only the one returned afterwards. */
  next(table: RouteTable): RouteMatcher {
    return runNow(this.preparing(table))();
  }

  /**
   * next() in two parts: steps a caller may pause between, which change nothing (requests
   * keep being matched by this matcher), then the function that switches to the new table
   * at once and returns its matcher.
   */
  *preparing(table: RouteTable): Steps<() => RouteMatcher> {
    if (this.superseded)
      throw new Error('this matcher was updated in place: make the next from the one that replaced it');
    const changes = yield* changesUpTo(this.routes, table.routes, compareRoutes, () => false, IN_PLACE_LIMIT);
    if (changes === null) {
      const hosts = yield* hostEntries(table.routes, this.hosts);
      return () => RouteMatcher.of(hosts, table.routes);
    }
    const { removed, added } = changes;
    // The hosts that changed, with their routes in table order (in any order of the table).
    const changed = new Map<string, Route[]>();
    for (const route of [...removed, ...added]) changed.set(route.host, []);
    if (changed.size > 0) {
      for (let i = 0; i < table.routes.length; i++) {
        if (i % STEP === STEP - 1) yield;
        const route = table.routes[i] as Route;
        changed.get(route.host)?.push(route);
      }
    }
    const entries = [...changed].map(
      ([host, routes]) => [host, routes.length === 0 ? null : newEntry(routes)] as const,
    );
    return () => {
      if (this.superseded) throw new Error('this matcher was updated in place already');
      this.superseded = true;
      for (const [host, entry] of entries) {
        if (entry === null) this.hosts.delete(host);
        else this.hosts.set(host, entry);
      }
      return RouteMatcher.of(this.hosts, table.routes);
    };
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
