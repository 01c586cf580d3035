import { podTarget } from '../src/core/pod-target.js';
import { compareRoutes, type Affinity, type PodEndpoint, type Route } from '../src/core/route-table.js';
import { changesUpTo } from '../src/core/sorted-changes.js';
import { runNow, type Steps } from '../src/core/time-slices.js';
import {
  crc32Long,
  FALL_BACK_TO_ROUND_ROBIN,
  findChashPoint,
  getChashPeer,
  initChashPoints,
  type ChashPoints,
  type PeerRules,
} from './consistent-hash.js';
import { remoteAddrText } from './remote-addr.js';

// Peer choice as nginx's round-robin upstream makes it with the defaults the rendered
// config relies on (weight=1, max_fails=1, fail_timeout=10s), so that the same request
// sequence reaches the same pods through either data plane:
// - smooth weighted round robin, which with equal weights visits peers in order;
// - a peer that failed is left out for fail_timeout, and when it comes back its weight
//   starts at 0 and grows by one per pick, as nginx's effective_weight does;
// - one request tries each peer at most once; when no peer is left, "no live upstreams";
// - a route with one pod is nginx's single-server upstream: never marked failed, one try;
// - a route with affinity ('ip') chooses as nginx's `hash $remote_addr consistent` does
//   (consistent-hash.ts), on the same peer state, falling back to round robin as nginx does.

export interface BalancerOptions {
  failTimeoutMs: number;
  now?: () => number;
}

interface PeerState {
  backend: PodEndpoint;
  currentWeight: number;
  effectiveWeight: number;
  fails: number;
  checked: number;
  accessed: number;
}

const WEIGHT = 1;
const MAX_FAILS = 1;

/** The balancing state of one route: nginx's peers of one upstream. */
export class PeerGroup {
  private readonly peers: PeerState[];
  private readonly now: () => number;
  private readonly rules: PeerRules;
  /** The consistent-hash ring, made on the first request that needs it. */
  private points: ChashPoints | null = null;

  constructor(
    readonly backends: readonly PodEndpoint[],
    private readonly options: BalancerOptions,
    /** 'ip': the client address chooses the peer (consistent hashing); null: round robin. */
    readonly affinity: Affinity | null = null,
  ) {
    this.now = options.now ?? Date.now;
    this.rules = { weight: WEIGHT, maxFails: MAX_FAILS, failTimeoutMs: options.failTimeoutMs };
    const start = this.now();
    this.peers = backends.map((backend) => ({
      backend,
      currentWeight: 0,
      effectiveWeight: WEIGHT,
      fails: 0,
      checked: start,
      accessed: 0,
    }));
  }

  get single(): boolean {
    return this.peers.length === 1;
  }

  /** Whether the client's address chooses the peer: affinity, and more than one peer. */
  get hashesClients(): boolean {
    return this.affinity === 'ip' && !this.single;
  }

  /**
   * Starts the peer choice of one request from `clientAddress` (the socket's remoteAddress,
   * read only with affinity).
   */
  begin(clientAddress?: string): PeerSelection {
    if (!this.hashesClients) return new PeerSelection(this, -1);
    // init_chash_peer: the first point at or after the crc32 of nginx's $remote_addr text.
    this.points ??= initChashPoints(this.backends.map((b) => podTarget(b.ip, b.port)));
    return new PeerSelection(this, findChashPoint(this.points, crc32Long(remoteAddrText(clientAddress ?? ''))));
  }

  /** @internal The next peer for a request, or null: by its place on the ring when it has one. */
  pickFor(selection: PeerSelection, tried: readonly number[]): number | null {
    if (selection.hash < 0 || this.points === null) return this.pick(tried);
    const peer = getChashPeer(this.points, this.peers, tried, selection, this.now(), this.rules);
    return peer === FALL_BACK_TO_ROUND_ROBIN ? this.pick(tried) : peer;
  }

  /** @internal The next peer for a request that has tried `tried`, or null. */
  pick(tried: readonly number[]): number | null {
    if (this.single) return tried.length > 0 ? null : 0;
    const now = this.now();
    const { peers } = this;
    let best = -1;
    let total = 0;
    for (let i = 0; i < peers.length; i++) {
      const peer = peers[i] as PeerState;
      if (tried.includes(i)) continue;
      if (peer.fails >= MAX_FAILS && now - peer.checked <= this.options.failTimeoutMs) continue;
      peer.currentWeight += peer.effectiveWeight;
      total += peer.effectiveWeight;
      if (peer.effectiveWeight < WEIGHT) peer.effectiveWeight++;
      if (best < 0 || peer.currentWeight > (peers[best] as PeerState).currentWeight) best = i;
    }
    if (best < 0) return null;
    const chosen = this.peers[best] as PeerState;
    chosen.currentWeight -= total;
    if (now - chosen.checked > this.options.failTimeoutMs) chosen.checked = now;
    return best;
  }

  /** @internal */
  failed(i: number): void {
    const peer = this.peers[i];
    if (peer === undefined || this.single) return;
    const now = this.now();
    peer.fails++;
    peer.accessed = now;
    peer.checked = now;
    peer.effectiveWeight = Math.max(0, peer.effectiveWeight - WEIGHT / MAX_FAILS);
  }

  /** @internal */
  succeeded(i: number): void {
    const peer = this.peers[i];
    if (peer === undefined || this.single) return;
    // A success after the peer was given another chance clears its failures.
    if (peer.accessed < peer.checked) peer.fails = 0;
  }
}

/** Methods nginx does not send to another pod once the request reached one. */
const NOT_RETRIED_AFTER_SEND = new Set(['POST', 'PATCH', 'LOCK']);

/** The peers one request goes through. */
export class PeerSelection {
  /** Indices of the peers tried, in order (a handful at most). */
  private readonly tried: number[] = [];
  /** With affinity: the point on the ring the request is at (nginx's hp->hash); -1 without. */
  hash: number;
  /** With affinity: points passed without a usable peer (nginx's hp->tries). */
  tries = 0;

  constructor(
    private readonly group: PeerGroup,
    hash: number,
  ) {
    this.hash = hash;
  }

  /** The next peer to try, or null when none is left ("no live upstreams"). */
  next(): { index: number; backend: PodEndpoint } | null {
    const index = this.group.pickFor(this, this.tried);
    if (index === null) return null;
    this.tried.push(index);
    return { index, backend: this.group.backends[index] as PodEndpoint };
  }

  succeeded(index: number): void {
    this.group.succeeded(index);
  }

  /** Records a failure (error or timeout); says whether another peer may be tried. */
  failed(index: number, method: string, requestSent: boolean): 'next' | 'stop' {
    this.group.failed(index);
    if (requestSent && NOT_RETRIED_AFTER_SEND.has(method)) return 'stop';
    // Each peer once per request (nginx's tries = number of servers).
    return this.tried.length < this.group.backends.length ? 'next' : 'stop';
  }
}

function groupId(route: Route): string {
  return `${route.host}\n${route.path}`;
}

/** What a route's group depends on: its pods, and how it balances over them. */
function groupKey(route: Route): string {
  return JSON.stringify([route.affinity, route.backends.map((b) => [b.pod, b.namespace, b.ip, b.port])]);
}

interface GroupEntry {
  /** The route the group was made or last kept for: the same object needs no comparison. */
  route: Route;
  /** groupKey of its route, worked out when first compared. */
  key: string | null;
  group: PeerGroup;
}

/** How many routes between two points where a build may pause. */
const STEP = 256;
/**
 * Up to this many changed routes, groups are updated in place rather than all copied. The
 * changes are found by a walk in table order where identical routes cost a comparison of
 * references; out of order, a route may show up as removed and added, and its group is
 * then taken out and put back as it was (entries are worked out before any is removed),
 * so any order gives the right groups.
 */
const IN_PLACE_LIMIT = 2048;

/**
 * The groups of a route table. A route whose pods and affinity did not change keeps its
 * group across a table swap, so its round-robin position and failure marks survive.
 *
 * A table that differs from the last in a few routes (the incremental route table keeps
 * the others' objects) updates the groups in place when next() or preparing()'s switch
 * runs: after that, only the instance returned may be asked for groups. The proxy asks
 * for a group only while it starts a request, in the same turn of the event loop as it
 * reads its current routing, and switches matcher and balancers together.
 */
export class Balancers {
  /** Set once the groups were updated in place for the instance next() returned. */
  private superseded = false;

  private constructor(
    private readonly groups: Map<string, GroupEntry>,
    /** The same groups by the table's Route objects: the per-request lookup allocates nothing. */
    private readonly byRoute: Map<Route, PeerGroup>,
    /** The routes the groups are for, in the order given. */
    private readonly routes: readonly Route[],
  ) {}

  static empty(): Balancers {
    return new Balancers(new Map(), new Map(), []);
  }

  /** The groups for `routes`, reusing this instance's where the pods are the same. */
  next(routes: readonly Route[], options: BalancerOptions): Balancers {
    return runNow(this.preparing(routes, options))();
  }

  /**
   * next() in two parts: steps a caller may pause between, which change nothing (requests
   * keep getting this instance's groups), then the function that switches to the new
   * routes at once and returns their balancers.
   */
  *preparing(routes: readonly Route[], options: BalancerOptions): Steps<() => Balancers> {
    if (this.superseded)
      throw new Error('these balancers were updated in place: build from the ones that replaced them');
    const changes = yield* changesUpTo(this.routes, routes, compareRoutes, () => false, 2 * IN_PLACE_LIMIT);
    if (changes !== null) {
      const entries = changes.added.map((route) => [groupId(route), this.entryFor(route, options)] as const);
      return () => {
        if (this.superseded) throw new Error('these balancers were updated in place already');
        this.superseded = true;
        for (const route of changes.removed) {
          this.groups.delete(groupId(route));
          this.byRoute.delete(route);
        }
        for (const [id, entry] of entries) {
          this.groups.set(id, entry);
          this.byRoute.set(entry.route, entry.group);
        }
        return new Balancers(this.groups, this.byRoute, routes);
      };
    }
    const groups = new Map<string, GroupEntry>();
    const byRoute = new Map<Route, PeerGroup>();
    for (let i = 0; i < routes.length; i++) {
      if (i % STEP === STEP - 1) yield;
      const route = routes[i] as Route;
      const entry = this.entryFor(route, options);
      groups.set(groupId(route), entry);
      byRoute.set(route, entry.group);
    }
    return () => new Balancers(groups, byRoute, routes);
  }

  /** The group of `route`: this instance's when its pods are the same, else a new one. */
  private entryFor(route: Route, options: BalancerOptions): GroupEntry {
    const old = this.groups.get(groupId(route));
    if (old === undefined) return { route, key: null, group: new PeerGroup(route.backends, options, route.affinity) };
    if (old.route === route) return old;
    old.key ??= groupKey(old.route);
    const key = groupKey(route);
    if (old.key === key) return { route, key, group: old.group };
    return { route, key: null, group: new PeerGroup(route.backends, options, route.affinity) };
  }

  /** `route` must be one of the routes this instance was made for. */
  groupFor(route: Route): PeerGroup {
    const group = this.byRoute.get(route);
    if (group === undefined) throw new Error(`no balancer for ${route.host}${route.path}`);
    return group;
  }
}
