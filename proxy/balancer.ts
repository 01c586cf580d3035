import type { Backend, Route } from '../src/core/route-table.js';

// Peer choice as nginx's round-robin upstream makes it with the defaults the rendered
// config relies on (weight=1, max_fails=1, fail_timeout=10s), so that the same request
// sequence reaches the same pods through either data plane:
// - smooth weighted round robin, which with equal weights visits peers in order;
// - a peer that failed is left out for fail_timeout, and when it comes back its weight
//   starts at 0 and grows by one per pick, as nginx's effective_weight does;
// - one request tries each peer at most once; when no peer is left, "no live upstreams";
// - a route with one pod is nginx's single-server upstream: never marked failed, one try.

export interface BalancerOptions {
  failTimeoutMs: number;
  now?: () => number;
}

interface PeerState {
  backend: Backend;
  currentWeight: number;
  effectiveWeight: number;
  fails: number;
  checked: number;
  accessed: number;
}

const WEIGHT = 1;
const MAX_FAILS = 1;

/** The balancing state of one route. */
export class PeerGroup {
  private readonly peers: PeerState[];
  private readonly now: () => number;

  constructor(
    readonly backends: readonly Backend[],
    private readonly options: BalancerOptions,
  ) {
    this.now = options.now ?? Date.now;
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

  /** Starts the peer choice of one request. */
  begin(): PeerSelection {
    return new PeerSelection(this);
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

  constructor(private readonly group: PeerGroup) {}

  /** The next peer to try, or null when none is left ("no live upstreams"). */
  next(): { index: number; backend: Backend } | null {
    const index = this.group.pick(this.tried);
    if (index === null) return null;
    this.tried.push(index);
    return { index, backend: this.group.backends[index] as Backend };
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

function backendsKey(backends: readonly Backend[]): string {
  return JSON.stringify(backends.map((b) => [b.pod, b.namespace, b.ip, b.port]));
}

/**
 * The groups of a route table. A route whose pods did not change keeps its group across
 * a table swap, so its round-robin position and failure marks survive.
 */
export class Balancers {
  private constructor(
    private readonly groups: Map<string, { key: string; group: PeerGroup }>,
    /** The same groups by the table's Route objects, for the per-request lookup. */
    private readonly byRoute: Map<Route, PeerGroup>,
  ) {}

  static empty(): Balancers {
    return new Balancers(new Map(), new Map());
  }

  /** The groups for `routes`, reusing this instance's where the pods are the same. */
  next(routes: readonly Route[], options: BalancerOptions): Balancers {
    const groups = new Map<string, { key: string; group: PeerGroup }>();
    const byRoute = new Map<Route, PeerGroup>();
    for (const route of routes) {
      const id = `${route.host}\n${route.path}`;
      const key = backendsKey(route.backends);
      const old = this.groups.get(id);
      const entry = old !== undefined && old.key === key ? old : { key, group: new PeerGroup(route.backends, options) };
      groups.set(id, entry);
      byRoute.set(route, entry.group);
    }
    return new Balancers(groups, byRoute);
  }

  /** `route` must be one of the routes this instance was made for. */
  groupFor(route: Route): PeerGroup {
    const group = this.byRoute.get(route);
    if (group === undefined) throw new Error(`no balancer for ${route.host}${route.path}`);
    return group;
  }
}
