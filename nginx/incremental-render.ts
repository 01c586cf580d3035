import { compareRoutes, sameRoute, type Route, type RouteTable } from '../src/core/route-table.js';
import { compareText, sortedChanges } from '../src/core/sorted-changes.js';
import { BlockList } from './block-list.js';
import type { ConfPieces } from './conf-pieces.js';
import { hashSizesOf, serverNameFacts, type ServerNameFacts, type ServerNamesHashSizes } from './hash.js';
import {
  emptyConfText,
  hasUpstream,
  upstreamForEveryRoute,
  headText,
  renderNginxConf,
  serverText,
  tailText,
  upstreamBaseName,
  upstreamText,
  type RenderOptions,
} from './render.js';

// renderNginxConf, remembering the text of every upstream and server block between calls:
// a new table costs a walk over its routes plus the blocks of the hosts whose routes
// changed, and the same table rendered again costs only the head. The output is
// renderNginxConf's, byte for byte (test/incremental-build.test.ts), handed out as pieces
// (see block-list.ts): the pieces of blocks that did not change are the same Buffers as
// last time, so the nginx manager hashes and writes the config without ever holding it as
// one string, and hashes again only the pieces that changed (conf-pieces.ts).
//
// Tables are compared by identity first: the incremental route table keeps the objects of
// unchanged routes, so most routes cost one comparison. Any table works, though: a route
// that is a new object equal to the old one keeps its blocks.

/** The options a block depends on: all but `runtime`, which only the head uses. */
function blockOptionsKey(options: RenderOptions): string {
  return JSON.stringify(options, (key, value: unknown) => (key === 'runtime' ? undefined : value));
}

/** A text as a piece, the same Buffer as last time when the text is the same. */
class KeptPiece {
  private text: string | null = null;
  private bytes: Buffer = Buffer.alloc(0);

  of(text: string): Buffer {
    if (text !== this.text) {
      this.text = text;
      this.bytes = Buffer.from(text, 'utf8');
    }
    return this.bytes;
  }
}

export class IncrementalNginxRenderer {
  private optionsKey: string | null = null;
  /** The routes of the last table rendered. */
  private routes: readonly Route[] = [];
  /** Server blocks by host, each with what hash sizing needs of its host. */
  private readonly servers = new BlockList<string, ServerNameFacts>(compareText);
  private readonly upstreams = new BlockList<Route>(compareRoutes);
  /** The upstream name of each route that has one. */
  private readonly upstreamNames = new Map<Route, string>();
  /** Routes with an upstream by base name, in table order: the n-th gets suffix `_n`. */
  private readonly byBaseName = new Map<string, Route[]>();
  private hashSizes: ServerNamesHashSizes | null = null;

  private readonly head = new KeptPiece();
  private readonly tail = new KeptPiece();

  /** renderNginxConf(table, options), as one string. */
  render(table: RouteTable, options: RenderOptions): string {
    const pieces = this.pieces(table, options);
    return pieces.length === 1
      ? Buffer.from(pieces[0] as Uint8Array).toString('utf8')
      : Buffer.concat(pieces).toString('utf8');
  }

  /**
   * renderNginxConf(table, options) as UTF-8 pieces in order: the head, the upstream and
   * server blocks in chunks, the tail. A piece is never changed once handed out.
   */
  pieces(table: RouteTable, options: RenderOptions): ConfPieces {
    const key = blockOptionsKey(options);
    if (key !== this.optionsKey) this.forget(key);
    if (table.routes !== this.routes) {
      try {
        this.update(table.routes, options);
      } catch {
        // A value nginx.conf cannot hold, most likely: the blocks kept may be half updated.
        // Start over next time; the reference says what is wrong, as it would have.
        this.forget(null);
        return [Buffer.from(renderNginxConf(table, options), 'utf8')];
      }
    }
    if (table.routes.length === 0) return [this.head.of(emptyConfText(options))];
    return [
      this.head.of(`${headText(this.hashSizes as ServerNamesHashSizes, options)}\n`),
      ...this.upstreams.pieces(),
      ...this.servers.pieces(),
      this.tail.of(tailText(options)),
    ];
  }

  private forget(optionsKey: string | null): void {
    this.optionsKey = optionsKey;
    this.routes = [];
    this.servers.clear();
    this.upstreams.clear();
    this.upstreamNames.clear();
    this.byBaseName.clear();
    this.hashSizes = null;
  }

  private update(routes: readonly Route[], options: RenderOptions): void {
    if (this.routes.length === 0) {
      this.fill(routes, options);
      return;
    }
    const changes = sortedChanges(this.routes, routes, compareRoutes, sameRoute);
    const dirtyHosts = new Set<string>();
    const dirtyBases = new Set<string>();
    for (const route of changes.removed) {
      dirtyHosts.add(route.host);
      if (!this.upstreamNames.has(route)) continue;
      const base = upstreamBaseName(route);
      const group = this.byBaseName.get(base) as Route[];
      group.splice(group.indexOf(route), 1);
      dirtyBases.add(base);
      this.upstreamNames.delete(route);
      this.upstreams.delete(route);
    }
    for (const route of changes.added) {
      dirtyHosts.add(route.host);
      if (!hasUpstream(route, upstreamForEveryRoute(options))) continue;
      const base = upstreamBaseName(route);
      const group = this.byBaseName.get(base) ?? [];
      this.byBaseName.set(base, group);
      let at = group.length;
      while (at > 0 && compareRoutes(group[at - 1] as Route, route) > 0) at--;
      group.splice(at, 0, route);
      dirtyBases.add(base);
    }
    // An equal route in a new object keeps its name and blocks, under the new object.
    for (const [before, after] of changes.renewed) {
      const name = this.upstreamNames.get(before);
      if (name === undefined) continue;
      const group = this.byBaseName.get(upstreamBaseName(before)) as Route[];
      group[group.indexOf(before)] = after;
      this.upstreamNames.delete(before);
      this.upstreamNames.set(after, name);
    }
    for (const base of dirtyBases) {
      const group = this.byBaseName.get(base) as Route[];
      if (group.length === 0) this.byBaseName.delete(base);
      group.forEach((route, i) => {
        const name = i === 0 ? base : `${base}_${i + 1}`;
        if (this.upstreamNames.get(route) === name) return;
        this.upstreamNames.set(route, name);
        this.upstreams.set(route, upstreamText(route, name, options), undefined);
        // The host's location names the upstream.
        dirtyHosts.add(route.host);
      });
    }

    let hostsChanged = this.hashSizes === null;
    for (const host of dirtyHosts) {
      const [from, to] = hostRange(routes, host);
      if (from === to) {
        this.servers.delete(host);
        hostsChanged = true;
        continue;
      }
      if (!this.servers.has(host)) hostsChanged = true;
      this.servers.set(
        host,
        serverText(host, routes.slice(from, to), this.upstreamNames, options),
        serverNameFacts(host),
      );
    }
    if (hostsChanged && this.servers.size > 0) this.hashSizes = hashSizesOf(this.servers.values());
    this.routes = routes;
  }

  /** Everything from nothing: one walk in table order, where names are given in that order. */
  private fill(routes: readonly Route[], options: RenderOptions): void {
    this.forget(this.optionsKey);
    const everyRoute = upstreamForEveryRoute(options);
    for (let i = 0; i < routes.length;) {
      const host = (routes[i] as Route).host;
      let end = i;
      for (; end < routes.length && (routes[end] as Route).host === host; end++) {
        const route = routes[end] as Route;
        if (!hasUpstream(route, everyRoute)) continue;
        const base = upstreamBaseName(route);
        const group = this.byBaseName.get(base) ?? [];
        this.byBaseName.set(base, group);
        group.push(route);
        const name = group.length === 1 ? base : `${base}_${group.length}`;
        this.upstreamNames.set(route, name);
        this.upstreams.append(route, upstreamText(route, name, options), undefined);
      }
      if (i > 0 && compareText((routes[i - 1] as Route).host, host) >= 0)
        throw new Error(`the routes of host ${host} are not together: the table is not sorted`);
      this.servers.append(
        host,
        serverText(host, routes.slice(i, end), this.upstreamNames, options),
        serverNameFacts(host),
      );
      i = end;
    }
    if (this.servers.size > 0) this.hashSizes = hashSizesOf(this.servers.values());
    this.routes = routes;
  }
}

/** Where the routes of `host` are in a table's routes, sorted by host then path. */
function hostRange(routes: readonly Route[], host: string): [number, number] {
  const bound = (above: (h: string) => boolean): number => {
    let lo = 0;
    let hi = routes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (above((routes[mid] as Route).host)) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
  return [bound((h) => h >= host), bound((h) => h > host)];
}
