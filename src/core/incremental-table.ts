import type { RouterConfig } from './config.js';
import type { Pod, Secret } from './kube-objects.js';
import { objectKey } from './kube-objects.js';
import {
  apiKeysByNamespace,
  compareRejections,
  compareRoutes,
  podCandidates,
  resolveRoute,
  routeKey,
  routingFacts,
  sameRoute,
  type ApiKey,
  type Candidate,
  type Rejection,
  type Route,
  type RouteTable,
} from './route-table.js';
import { patchingSorted, sortingInSteps } from './sorted-changes.js';
import { runNow, type Steps } from './time-slices.js';

// The route table kept up to date from one snapshot to the next, doing work in proportion
// to what changed: a pod whose routing facts did not change costs a lookup, a route whose
// claimants did not change is not resolved again, and the sorted routes and rejections
// are patched rather than sorted. The result is what buildRouteTable gives for the same
// snapshot, byte for byte (test/incremental-table.test.ts drives both through random
// changes). Unchanged routes and rejections keep their identity from one table to the
// next, and a snapshot that changes nothing gives back the very same table object, so
// consumers can tell what changed by comparing references.
//
// Sources hand out objects they never modify afterwards (a change is a new object); a
// pod object seen before is therefore not looked at again.

interface PodEntry {
  /** The object last seen under this key; a new object with the same routing facts changes nothing. */
  pod: Pod | null;
  candidates: Candidate[];
  /** Sorted. */
  rejections: readonly Rejection[];
  /** The update that last saw it. */
  seen: number;
}

interface RouteSlot {
  key: string;
  candidates: Candidate[];
  route: Route | null;
  /** Sorted. */
  rejections: readonly Rejection[];
}

const OPEN: ApiKey = { state: 'open' };
/** Most pods and routes have no rejection: they share one empty list (a 10,000-pod table keeps 50,000 of them). */
const NONE: readonly Rejection[] = Object.freeze([]);

function sorted(rejections: Rejection[]): readonly Rejection[] {
  return rejections.length === 0 ? NONE : rejections.sort(compareRejections);
}
/** How many items between two points where the work may pause. */
const STEP = 64;

/**
 * Slots by key, host + "\n" + path: the order of their routes (compareRoutes), since no
 * character of a valid host or path sorts before "\n", so a host that is a prefix of
 * another sorts first either way.
 */
function compareKeys(a: RouteSlot, b: RouteSlot): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

function sameRejections(a: readonly Rejection[], b: readonly Rejection[]): boolean {
  if (a === b) return true;
  return a.length === b.length && a.every((x, i) => compareRejections(x, b[i] as Rejection) === 0);
}

function sameApiKey(a: ApiKey, b: ApiKey): boolean {
  if (a.state !== b.state) return false;
  if (a.state === 'key' && b.state === 'key') return a.key === b.key;
  if (a.state === 'invalid' && b.state === 'invalid') return a.reason === b.reason;
  return true;
}

/** The keys whose values differ between two maps (absent counts as open). */
function changedNamespaces(before: ReadonlyMap<string, ApiKey>, after: ReadonlyMap<string, ApiKey>): Set<string> {
  const changed = new Set<string>();
  for (const [ns, key] of after) if (!sameApiKey(before.get(ns) ?? OPEN, key)) changed.add(ns);
  for (const [ns, key] of before) if (!after.has(ns) && !sameApiKey(key, OPEN)) changed.add(ns);
  return changed;
}

export class IncrementalRouteTable {
  private readonly pods = new Map<string, PodEntry>();
  /** The entry of each pod object last seen: an unchanged pod costs one lookup, no key. */
  private readonly byObject = new Map<Pod, PodEntry>();
  private readonly slots = new Map<string, RouteSlot>();
  private secrets: readonly Secret[] = [];
  private apiKeys: Map<string, ApiKey> = new Map();
  private table: RouteTable | null = null;
  private generation = 0;

  constructor(private readonly config: RouterConfig) {}

  /** The table for this snapshot, at once. */
  update(pods: readonly Pod[], secrets: readonly Secret[]): RouteTable {
    return runNow(this.updating(pods, secrets));
  }

  /**
   * The same as update(), as steps a caller may pause between (see time-slices.ts). The
   * snapshot must not change until the steps end, and no other update may run meanwhile.
   */
  *updating(pods: readonly Pod[], secrets: readonly Secret[]): Steps<RouteTable> {
    try {
      return yield* this.steps(pods, secrets);
    } catch (err) {
      // Half-applied changes would poison every later table: start over next time.
      this.reset();
      throw err;
    }
  }

  /** The last table, or null before the first update. */
  current(): RouteTable | null {
    return this.table;
  }

  private reset(): void {
    this.pods.clear();
    this.byObject.clear();
    this.slots.clear();
    this.secrets = [];
    this.apiKeys = new Map();
    this.table = null;
  }

  private *steps(pods: readonly Pod[], secrets: readonly Secret[]): Steps<RouteTable> {
    const generation = ++this.generation;
    // On a first build every slot is new: no need to track which changed.
    const everything = this.table === null;
    const dirty = new Set<RouteSlot>();
    const rejectionsRemoved: Rejection[] = [];
    // A set: a key twice in one snapshot may add a pod's rejections and take them back.
    const rejectionsAdded = new Set<Rejection>();
    const swapRejections = (before: readonly Rejection[], after: readonly Rejection[]): void => {
      for (const r of before) if (!rejectionsAdded.delete(r)) rejectionsRemoved.push(r);
      for (const r of after) rejectionsAdded.add(r);
    };

    const claim = (c: Candidate): void => {
      const key = routeKey(c.host, c.path);
      let slot = this.slots.get(key);
      if (slot === undefined) {
        // [c], not [] and a push: an array that grows from empty reserves room for 17.
        slot = { key, candidates: [c], route: null, rejections: NONE };
        this.slots.set(key, slot);
      } else {
        slot.candidates.push(c);
      }
      if (!everything) dirty.add(slot);
    };
    const unclaim = (c: Candidate): void => {
      const slot = this.slots.get(routeKey(c.host, c.path)) as RouteSlot;
      slot.candidates.splice(slot.candidates.indexOf(c), 1);
      dirty.add(slot);
    };
    const replace = (entry: PodEntry, candidates: Candidate[], rejections: readonly Rejection[]): void => {
      for (const c of entry.candidates) unclaim(c);
      for (const c of candidates) claim(c);
      entry.candidates = candidates;
      if (!sameRejections(entry.rejections, rejections)) {
        swapRejections(entry.rejections, rejections);
        entry.rejections = rejections;
      }
    };

    // Secrets: the API key of each namespace. The kube source hands them out in a stable
    // order, so an unchanged set is recognised item by item.
    const secretsSame = secrets.length === this.secrets.length && secrets.every((s, i) => s === this.secrets[i]);
    let keysChanged = new Set<string>();
    if (!secretsSame) {
      const apiKeys = apiKeysByNamespace(this.config, secrets);
      keysChanged = changedNamespaces(this.apiKeys, apiKeys);
      this.apiKeys = apiKeys;
      this.secrets = [...secrets];
    }

    // Pods: only those whose routing facts changed are routed again.
    let unique = 0;
    for (let i = 0; i < pods.length; i++) {
      if (i % STEP === STEP - 1) yield;
      const pod = pods[i] as Pod;
      const known = this.byObject.get(pod);
      if (known !== undefined) {
        // The same object as before; seen twice in this snapshot, it is still one pod.
        if (known.seen !== generation) {
          known.seen = generation;
          unique++;
        }
        continue;
      }
      const key = objectKey(pod);
      let entry = this.pods.get(key);
      if (entry === undefined) {
        entry = { pod: null, candidates: [], rejections: NONE, seen: generation };
        this.pods.set(key, entry);
        unique++;
      } else if (entry.seen === generation) {
        // The same key twice in one snapshot: keep the greater serialization, as
        // buildRouteTable does, so the result does not depend on their order.
        if (entry.pod === pod || JSON.stringify(pod) <= JSON.stringify(entry.pod ?? null)) continue;
      } else {
        entry.seen = generation;
        unique++;
        if (entry.pod === pod) continue;
      }
      const before = entry.pod;
      if (before !== null) this.byObject.delete(before);
      this.byObject.set(pod, entry);
      entry.pod = pod;
      const facts = routingFacts(this.config, pod);
      // Worked out again rather than kept: a first build need not serialize every pod.
      if (before !== null && JSON.stringify(facts) === JSON.stringify(routingFacts(this.config, before))) continue;
      const result = podCandidates(this.config, facts);
      replace(entry, result.candidates, sorted(result.rejections));
    }
    if (unique !== this.pods.size) {
      let i = 0;
      for (const [key, entry] of this.pods) {
        if (++i % STEP === 0) yield;
        if (entry.seen === generation) continue;
        replace(entry, [], NONE);
        this.pods.delete(key);
        if (entry.pod !== null) this.byObject.delete(entry.pod);
      }
    }

    // A namespace whose API key changed: every route it claims is resolved again.
    if (keysChanged.size > 0) {
      let i = 0;
      for (const slot of this.slots.values()) {
        if (++i % STEP === 0) yield;
        if (slot.candidates.some((c) => keysChanged.has(c.namespace))) dirty.add(slot);
      }
    }

    // Routes whose claimants changed.
    const routesRemoved: Route[] = [];
    // Slots, not routes: sorting by their keys gives the routes' order (compareKeys), several times faster.
    const routesAdded: RouteSlot[] = [];
    let n = 0;
    for (const slot of everything ? this.slots.values() : dirty) {
      if (++n % STEP === 0) yield;
      let route: Route | null = null;
      let rejections = NONE;
      if (slot.candidates.length === 0) {
        this.slots.delete(slot.key);
      } else {
        const result = resolveRoute(slot.candidates, this.apiKeys);
        route = result.route;
        rejections = sorted(result.rejections);
      }
      const before = slot.route;
      if (before !== null && route !== null && sameRoute(before, route)) route = before;
      if (route !== before) {
        if (before !== null) routesRemoved.push(before);
        if (route !== null) routesAdded.push(slot);
        slot.route = route;
      }
      if (!sameRejections(slot.rejections, rejections)) {
        swapRejections(slot.rejections, rejections);
        slot.rejections = rejections;
      }
    }
    yield;

    const previous = this.table;
    const routesSame = routesRemoved.length + routesAdded.length === 0;
    const rejectionsSame = rejectionsRemoved.length + rejectionsAdded.size === 0;
    if (previous !== null && routesSame && rejectionsSame) return previous;
    let routes = previous?.routes ?? [];
    if (!routesSame) {
      const added = (yield* sortingInSteps(routesAdded, compareKeys)).map((slot) => slot.route as Route);
      routes = yield* patchingSorted(routes, routesRemoved, added, compareRoutes, { addedSorted: true });
    }
    const rejections =
      previous !== null && rejectionsSame
        ? previous.rejections
        : yield* patchingSorted(previous?.rejections ?? [], rejectionsRemoved, [...rejectionsAdded], compareRejections);
    this.table = { routes, rejections };
    return this.table;
  }
}
