import type { RouterConfig } from './config.js';
import type { Pod, Secret } from './kube-objects.js';
import { objectKey } from './kube-objects.js';
import {
  apiKeysByNamespace,
  compareRejections,
  compareRoutes,
  OPEN,
  podCandidates,
  resolveRoute,
  sameRoute,
  sameRoutingFacts,
  type ApiKey,
  type Candidate,
  type Rejection,
  type Route,
  type RouteTable,
} from './route-table.js';
import { compareText, patchingSorted, sortingInSteps } from './sorted-changes.js';
import { runNow, type Steps } from './time-slices.js';

// The route table kept up to date from one snapshot to the next, doing work in proportion
// to what changed: a pod whose routing facts did not change costs a lookup, a route whose
// claimants did not change is not resolved again, and the sorted routes and rejections
// are patched rather than sorted. The result is what buildRouteTable gives for the same
// snapshot, byte for byte (test/incremental-build.test.ts drives both through random
// changes). Unchanged routes and rejections keep their identity from one table to the
// next, and a snapshot that changes nothing gives back the very same table object, so
// consumers can tell what changed by comparing references.
//
// Sources hand out objects they never modify afterwards (a change is a new object); a
// pod object seen before is therefore not looked at again, and a source that hands out
// its objects in a stable order (the Kubernetes and manifest sources do) costs no lookup
// for it either.
//
// Routes are kept by host, then by path: hosts are the strings the pods' annotations gave,
// so finding a route's slot hashes no new key, and a first build sorts the hosts (half as
// many as routes) and then the few paths of each.

interface PodEntry {
  /** The object last seen under this key; a new object with the same routing facts changes nothing. */
  pod: Pod | null;
  /** Where the pod claims routes: each candidate on each host. */
  hosts: readonly string[];
  candidates: readonly Candidate[];
  /** Sorted. */
  rejections: readonly Rejection[];
  /** The update that last saw it. */
  seen: number;
  /** Where that update found it. */
  index: number;
}

interface RouteSlot {
  host: string;
  path: string;
  candidates: Candidate[];
  route: Route | null;
  /** Sorted. */
  rejections: readonly Rejection[];
}

/** Above this many paths on a host, its slots are found through a map. */
const MANY_PATHS = 8;

/** Most pods and routes have no rejection: they share one empty list (a 10,000-pod table keeps 50,000 of them). */
const NONE: readonly Rejection[] = Object.freeze([]);
const NO_CANDIDATES: readonly Candidate[] = Object.freeze([]);
const NO_HOSTS: readonly string[] = Object.freeze([]);

function sorted(rejections: Rejection[]): readonly Rejection[] {
  return rejections.length === 0 ? NONE : rejections.sort(compareRejections);
}
/** How many items between two points where the work may pause. */
const STEP = 64;

/** Slots in the order of their routes (compareRoutes). */
function compareSlots(a: RouteSlot, b: RouteSlot): number {
  return compareText(a.host, b.host) || compareText(a.path, b.path);
}

function comparePaths(a: RouteSlot, b: RouteSlot): number {
  return compareText(a.path, b.path);
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

/** Moves a pod's claims and rejections to the ones given. */
type Replace = (
  entry: PodEntry,
  hosts: readonly string[],
  candidates: readonly Candidate[],
  rejections: readonly Rejection[],
) => void;

export class IncrementalRouteTable {
  private readonly pods = new Map<string, PodEntry>();
  /**
   * The last snapshot's pods and their entries, index for index: a source that keeps its
   * objects in a stable order hands out an unchanged pod where it was, or one further on
   * after a pod was taken out, and such a pod costs a comparison, not a lookup.
   */
  private lastPods: readonly Pod[] = [];
  private lastEntries: PodEntry[] = [];
  /** The slots of each host, made at their size (a host has a path or two, and there are many hosts). */
  private readonly hosts = new Map<string, RouteSlot[]>();
  /** The slots of the hosts with more than MANY_PATHS paths, by path. */
  private readonly manyPaths = new Map<string, Map<string, RouteSlot>>();
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
    this.lastPods = [];
    this.lastEntries = [];
    this.hosts.clear();
    this.manyPaths.clear();
    this.secrets = [];
    this.apiKeys = new Map();
    this.table = null;
  }

  private slotOf(host: string, path: string): RouteSlot | undefined {
    const slots = this.hosts.get(host);
    return slots === undefined ? undefined : this.find(host, slots, path);
  }

  private find(host: string, slots: RouteSlot[], path: string): RouteSlot | undefined {
    if (slots.length > MANY_PATHS) return (this.manyPaths.get(host) as Map<string, RouteSlot>).get(path);
    for (const slot of slots) if (slot.path === path) return slot;
    return undefined;
  }

  /** The slots of `host` and each candidate's path, made if new, with the candidate among its claimants. */
  private claim(host: string, candidates: readonly Candidate[], dirty: Set<RouteSlot> | null): void {
    let slots = this.hosts.get(host);
    if (slots === undefined && candidates.length <= MANY_PATHS) {
      // A host no other pod names (the common case): its slots at once. A pod's paths differ.
      // ([c], not [] and a push: an array that grows from empty reserves room for 17.)
      slots = candidates.map((c): RouteSlot => ({
        host,
        path: c.path,
        candidates: [c],
        route: null,
        rejections: NONE,
      }));
      this.hosts.set(host, slots);
      if (dirty !== null) for (const slot of slots) dirty.add(slot);
      return;
    }
    for (const c of candidates) {
      let slot = slots === undefined ? undefined : this.find(host, slots, c.path);
      if (slot !== undefined) {
        slot.candidates.push(c);
      } else {
        slot = { host, path: c.path, candidates: [c], route: null, rejections: NONE };
        if (slots === undefined) {
          slots = [slot];
          this.hosts.set(host, slots);
        } else if (slots.length < MANY_PATHS) {
          slots = slots.concat(slot);
          this.hosts.set(host, slots);
        } else {
          slots.push(slot);
          const many = this.manyPaths.get(host) ?? new Map(slots.map((s) => [s.path, s]));
          many.set(slot.path, slot);
          this.manyPaths.set(host, many);
        }
      }
      dirty?.add(slot);
    }
  }

  /** Takes an empty slot out of its host. */
  private drop(slot: RouteSlot): void {
    const slots = this.hosts.get(slot.host) as RouteSlot[];
    slots.splice(slots.indexOf(slot), 1);
    this.manyPaths.get(slot.host)?.delete(slot.path);
    if (slots.length <= MANY_PATHS) this.manyPaths.delete(slot.host);
    if (slots.length === 0) this.hosts.delete(slot.host);
  }

  /**
   * Takes in the Secrets, the API key of each namespace, and returns the namespaces whose key changed. The kube
   * source hands them out in a stable order, so an unchanged set is recognised item by item.
   */
  private updateSecrets(secrets: readonly Secret[]): Set<string> {
    const secretsSame = secrets.length === this.secrets.length && secrets.every((s, i) => s === this.secrets[i]);
    if (secretsSame) return new Set<string>();
    const apiKeys = apiKeysByNamespace(this.config, secrets);
    const keysChanged = changedNamespaces(this.apiKeys, apiKeys);
    this.apiKeys = apiKeys;
    this.secrets = [...secrets];
    return keysChanged;
  }

  /**
   * The entry of `pod`: where the last snapshot had it (`cursor.j`, moved past it), else by its key, new if unknown.
   */
  private entryOf(
    pod: Pod,
    cursor: { j: number },
    lastPods: readonly Pod[],
    lastEntries: readonly PodEntry[],
    generation: number,
  ): PodEntry {
    let entry: PodEntry | undefined;
    if (lastPods[cursor.j] === pod) entry = lastEntries[cursor.j++];
    else if (lastPods[cursor.j + 1] === pod) {
      entry = lastEntries[cursor.j + 1];
      cursor.j += 2;
    }
    // (An entry may hold another object of the same key, when a snapshot had both.)
    if (entry === undefined || entry.pod !== pod) {
      const key = objectKey(pod);
      entry = this.pods.get(key);
      if (entry === undefined) {
        entry = { pod: null, hosts: NO_HOSTS, candidates: NO_CANDIDATES, rejections: NONE, seen: 0, index: -1 };
        this.pods.set(key, entry);
      } else if (entry.pod === pod && entry.seen !== generation) {
        // Found out of place (pods were added or taken out before it): continue from there.
        cursor.j = entry.index + 1;
      }
    }
    return entry;
  }

  /** Takes out the pods the snapshot of `generation` no longer has. */
  private *dropUnseen(generation: number, replace: Replace): Steps<void> {
    let i = 0;
    for (const [key, entry] of this.pods) {
      if (++i % STEP === 0) yield;
      if (entry.seen === generation) continue;
      replace(entry, NO_HOSTS, NO_CANDIDATES, NONE);
      this.pods.delete(key);
    }
  }

  /** A namespace whose API key changed: every route it claims is resolved again. */
  private *markKeyed(keysChanged: ReadonlySet<string>, dirty: Set<RouteSlot>): Steps<void> {
    let i = 0;
    for (const slots of this.hosts.values()) {
      if (++i % STEP === 0) yield;
      for (const slot of slots) if (slot.candidates.some((c) => keysChanged.has(c.backend.namespace))) dirty.add(slot);
    }
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

    const replace: Replace = (entry, hosts, candidates, rejections) => {
      for (const host of entry.hosts) {
        for (const c of entry.candidates) {
          const slot = this.slotOf(host, c.path) as RouteSlot;
          slot.candidates.splice(slot.candidates.indexOf(c), 1);
          dirty.add(slot);
        }
      }
      for (const host of hosts) this.claim(host, candidates, everything ? null : dirty);
      entry.hosts = hosts;
      entry.candidates = candidates;
      if (!sameRejections(entry.rejections, rejections)) {
        swapRejections(entry.rejections, rejections);
        entry.rejections = rejections;
      }
    };

    // Secrets: the API key of each namespace. The kube source hands them out in a stable
    // order, so an unchanged set is recognised item by item.
    const keysChanged = this.updateSecrets(secrets);

    // Pods: only those whose routing facts changed are routed again.
    const lastPods = this.lastPods;
    const lastEntries = this.lastEntries;
    const entries = new Array<PodEntry>(pods.length);
    let unique = 0;
    /** Where in the last snapshot the next pod is expected. */
    const cursor = { j: 0 };
    for (let i = 0; i < pods.length; i++) {
      if (i % STEP === STEP - 1) yield;
      const pod = pods[i] as Pod;
      const entry = this.entryOf(pod, cursor, lastPods, lastEntries, generation);
      entries[i] = entry;
      if (entry.seen === generation) {
        // The same key twice in one snapshot: keep the greater serialization, as
        // buildRouteTable does, so the result does not depend on their order.
        if (entry.pod === pod || JSON.stringify(pod) <= JSON.stringify(entry.pod ?? null)) continue;
      } else {
        entry.seen = generation;
        unique++;
      }
      entry.index = i;
      const before = entry.pod;
      if (before === pod) continue;
      entry.pod = pod;
      if (before !== null && sameRoutingFacts(this.config, before, pod)) continue;
      const claims = podCandidates(this.config, pod);
      replace(entry, claims.hosts, claims.candidates, sorted(claims.rejections));
    }
    this.lastPods = pods;
    this.lastEntries = entries;
    if (unique !== this.pods.size) yield* this.dropUnseen(generation, replace);
    if (keysChanged.size > 0 && !everything) yield* this.markKeyed(keysChanged, dirty);

    return everything ? yield* this.first() : yield* this.patched(dirty, rejectionsRemoved, rejectionsAdded);
  }

  /**
   * The route of a slot worked out again: the one it has when nothing changed, null when
   * it has none (an empty slot is dropped); its rejections are updated through `swap`.
   */
  private resolve(
    slot: RouteSlot,
    swap: (before: readonly Rejection[], after: readonly Rejection[]) => void,
  ): Route | null {
    let route: Route | null = null;
    let rejections = NONE;
    if (slot.candidates.length === 0) {
      this.drop(slot);
    } else {
      const result = resolveRoute(slot.host, slot.path, slot.candidates, this.apiKeys);
      route = result.route;
      rejections = sorted(result.rejections);
    }
    const before = slot.route;
    if (before !== null && route !== null && sameRoute(before, route)) route = before;
    if (!sameRejections(slot.rejections, rejections)) {
      swap(slot.rejections, rejections);
      slot.rejections = rejections;
    }
    return route;
  }

  /** The first table: every host in order, the paths of each in order. */
  private *first(): Steps<RouteTable> {
    const rejections: Rejection[] = [];
    for (const entry of this.pods.values()) for (const r of entry.rejections) rejections.push(r);
    const collect = (_before: readonly Rejection[], after: readonly Rejection[]): void => {
      for (const r of after) rejections.push(r);
    };
    const hosts = yield* sortingInSteps([...this.hosts.keys()], compareText);
    const routes: Route[] = [];
    let n = 0;
    for (const host of hosts) {
      const slots = this.hosts.get(host) as RouteSlot[];
      // A pod twice in the snapshot may have left a slot empty.
      if (slots.some((s) => s.candidates.length === 0)) {
        for (const slot of slots.filter((s) => s.candidates.length === 0)) this.drop(slot);
        if (slots.length === 0) continue;
      }
      if (slots.length > 1) slots.sort(comparePaths);
      for (const slot of slots) {
        if (++n % STEP === 0) yield;
        const route = this.resolve(slot, collect);
        slot.route = route;
        if (route !== null) routes.push(route);
      }
    }
    this.table = { routes, rejections: yield* sortingInSteps(rejections, compareRejections) };
    return this.table;
  }

  /** The last table with the routes and rejections of the dirty slots changed. */
  private *patched(
    dirty: Set<RouteSlot>,
    rejectionsRemoved: Rejection[],
    rejectionsAdded: Set<Rejection>,
  ): Steps<RouteTable> {
    const swapRejections = (before: readonly Rejection[], after: readonly Rejection[]): void => {
      for (const r of before) if (!rejectionsAdded.delete(r)) rejectionsRemoved.push(r);
      for (const r of after) rejectionsAdded.add(r);
    };
    const routesRemoved: Route[] = [];
    // Slots, not routes: sorted by host and path they give the routes' order.
    const routesAdded: RouteSlot[] = [];
    let n = 0;
    for (const slot of dirty) {
      if (++n % STEP === 0) yield;
      const before = slot.route;
      const route = this.resolve(slot, swapRejections);
      if (route !== before) {
        if (before !== null) routesRemoved.push(before);
        if (route !== null) routesAdded.push(slot);
        slot.route = route;
      }
    }
    yield;

    const previous = this.table as RouteTable;
    const routesSame = routesRemoved.length + routesAdded.length === 0;
    const rejectionsSame = rejectionsRemoved.length + rejectionsAdded.size === 0;
    if (routesSame && rejectionsSame) return previous;
    let routes = previous.routes;
    if (!routesSame) {
      const added = (yield* sortingInSteps(routesAdded, compareSlots)).map((slot) => slot.route as Route);
      routes = yield* patchingSorted(routes, routesRemoved, added, compareRoutes, { addedSorted: true });
    }
    const rejections = rejectionsSame
      ? previous.rejections
      : yield* patchingSorted(previous.rejections, rejectionsRemoved, [...rejectionsAdded], compareRejections);
    this.table = { routes, rejections };
    return this.table;
  }
}
