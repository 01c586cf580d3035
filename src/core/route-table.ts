import { isIP } from 'node:net';
import { parseAffinity, parseHosts, parsePaths, type Affinity } from './annotations.js';
import type { RouterConfig } from './config.js';
import { dnsLabelProblem, dnsSubdomainProblem } from './kube-names.js';
import type { Pod, Secret } from './kube-objects.js';
import { objectKey } from './kube-objects.js';
import { matchesLabels } from './label-selector.js';
import { compareText } from './sorted-changes.js';

// The route table is a pure function of (config, pods, secrets): the same objects give
// the same table, byte for byte, whatever order they arrive in. Every pod, host or path
// that does not become a route leaves a rejection saying why.

export type { Affinity } from './annotations.js';

/** One pod a route sends requests to: where it listens. A route's `backends` are these. */
export interface PodEndpoint {
  pod: string;
  namespace: string;
  ip: string;
  port: number;
}

export interface Route {
  host: string;
  path: string;
  /** The namespace that owns this host+path; its pods are the backends. */
  namespace: string;
  /** The base64 text a request must carry in the API-key header, or null when open. */
  apiKey: string | null;
  /**
   * 'ip': each client address keeps to one pod (nginx's `hash $remote_addr consistent`);
   * null: round robin. The owning namespace's oldest pod on the route decides.
   */
  affinity: Affinity | null;
  /** In pod-name order, which is the round-robin order. */
  backends: PodEndpoint[];
}

export interface Rejection {
  namespace: string;
  pod: string;
  field: string;
  value: string;
  code: RejectionCode;
  reason: string;
}

export type RejectionCode =
  | 'NOT_SELECTED'
  | 'BAD_NAME'
  | 'TERMINATING'
  | 'NOT_RUNNING'
  | 'NO_IP'
  | 'BAD_IP'
  | 'NOT_READY'
  | 'MISSING_ANNOTATION'
  | 'BAD_HOST'
  | 'NO_HOSTS'
  | 'BAD_PORT'
  | 'PORT_NOT_DECLARED'
  | 'BAD_PATH'
  | 'DUPLICATE_PATH'
  | 'NO_PATHS'
  | 'TOO_MANY_HOSTS'
  | 'TOO_MANY_PATHS'
  | 'ROUTE_CLAIMED'
  | 'BAD_API_KEY'
  | 'BAD_AFFINITY'
  | 'AFFINITY_CONFLICT';

export interface RouteTable {
  routes: Route[];
  rejections: Rejection[];
}

/**
 * A pod's claim on one path, on every host the pod names: the claims of one host and
 * path settle who owns that route. One per path rather than per host and path, and the
 * backend object is shared by every route the pod serves on that port.
 */
export interface Candidate {
  path: string;
  backend: PodEndpoint;
  /** When the pod was created (ms since the epoch; Infinity when unknown). */
  created: number;
  /** The affinity the pod asks for; null for none, or for a value that was refused. */
  affinity: Affinity | null;
  /** [backend], the backends of every route this claim wins alone (most routes). */
  alone: PodEndpoint[];
}

/** What one pod asks for: routes on each of `hosts` for each candidate's path. */
export interface PodClaims {
  hosts: string[];
  candidates: Candidate[];
  rejections: Rejection[];
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The order of a table's routes: by host, then path. */
export function compareRoutes(a: Route, b: Route): number {
  return compareText(a.host, b.host) || compareText(a.path, b.path);
}

/** The order of a table's rejections: by namespace, pod, field, value, code, then reason. */
export function compareRejections(a: Rejection, b: Rejection): number {
  return (
    compareText(a.namespace, b.namespace) ||
    compareText(a.pod, b.pod) ||
    compareText(a.field, b.field) ||
    compareText(a.value, b.value) ||
    compareText(a.code, b.code) ||
    compareText(a.reason, b.reason)
  );
}

/**
 * One object per namespace/name. Sources never repeat one, but a caller may; keeping the
 * greatest serialization keeps the result independent of input order. Objects are
 * serialized only when their key collides, not on every rebuild.
 */
function uniqueByKey<T extends { metadata?: { name?: string; namespace?: string } }>(objects: Iterable<T>): T[] {
  const chosen = new Map<string, T>();
  for (const obj of objects) {
    const key = objectKey(obj);
    const seen = chosen.get(key);
    if (seen === undefined || JSON.stringify(obj) > JSON.stringify(seen)) chosen.set(key, obj);
  }
  return [...chosen.values()];
}

function declaredPorts(pod: Pod): Set<number> {
  const ports = new Set<number>();
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) {
      if (typeof p.containerPort === 'number') ports.add(p.containerPort);
    }
  }
  return ports;
}

function describeLabels(labels: Record<string, string> | undefined): string {
  return Object.entries(labels ?? {})
    .sort(([a], [b]) => compareText(a, b))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/** Most pods are routed: they share this empty list, which nothing may push to. */
const NO_REJECTIONS: Rejection[] = [];
Object.freeze(NO_REJECTIONS);

/** Reasons the pod as a whole cannot be routed (its state, not its annotations); NO_REJECTIONS when none. */
function podStateRejections(config: RouterConfig, pod: Pod, namespace: string, name: string): Rejection[] {
  const metadata = pod.metadata;
  if (!matchesLabels(config.labelSelector, metadata?.labels)) {
    return [
      rejection(
        namespace,
        name,
        'metadata.labels',
        describeLabels(metadata?.labels),
        'NOT_SELECTED',
        `labels do not match the selector "${config.labelSelector.text}"`,
      ),
    ];
  }
  let out = NO_REJECTIONS;
  const reject = (field: string, value: string, code: RejectionCode, reason: string): void => {
    if (out === NO_REJECTIONS) out = [];
    out.push(rejection(namespace, name, field, value, code, reason));
  };
  const nsProblem = dnsLabelProblem(namespace);
  if (nsProblem !== null) reject('metadata.namespace', namespace, 'BAD_NAME', `namespace name ${nsProblem}`);
  const nameProblem = dnsSubdomainProblem(name);
  if (nameProblem !== null) reject('metadata.name', name, 'BAD_NAME', `pod name ${nameProblem}`);
  if (out.length > 0) return out;

  if (metadata?.deletionTimestamp) {
    reject('metadata.deletionTimestamp', metadata.deletionTimestamp, 'TERMINATING', 'pod is terminating');
  }
  const status = pod.status;
  const phase = status?.phase ?? '';
  if (phase !== 'Running')
    reject('status.phase', phase, 'NOT_RUNNING', `pod is not running (phase ${JSON.stringify(phase)})`);
  const ip = status?.podIP ?? '';
  if (ip === '') reject('status.podIP', '', 'NO_IP', 'pod has no IP address yet');
  else if (isIP(ip) === 0)
    reject('status.podIP', ip, 'BAD_IP', `pod IP ${JSON.stringify(ip)} is not an IPv4 or IPv6 address`);
  if (config.requireReady) {
    const ready = readyStatus(status?.conditions) ?? 'missing';
    if (ready !== 'True') {
      reject('status.conditions', `Ready=${ready}`, 'NOT_READY', `pod is not ready (Ready condition is ${ready})`);
    }
  }
  return out;
}

function readyStatus(conditions: ReadonlyArray<{ type?: string; status?: string }> | undefined): string | undefined {
  if (conditions === undefined) return undefined;
  for (const c of conditions) if (c.type === 'Ready') return c.status;
  return undefined;
}

function rejection(
  namespace: string,
  pod: string,
  field: string,
  value: string,
  code: RejectionCode,
  reason: string,
): Rejection {
  return { namespace, pod, field, value, code, reason };
}

/** The pod annotations routing reads: whatever keeps only parts of a pod must keep these. */
export function routingAnnotations(config: RouterConfig): string[] {
  return [config.hostsAnnotation, config.pathsAnnotation, config.affinityAnnotation];
}

/**
 * The parts of a pod its routes depend on, as a Pod: the reference build gives
 * podCandidates only these, so a field it reads must be copied here or it is missing in
 * every test (and sameRoutingFacts must compare it). Two pods with the same facts route
 * alike, which lets the incremental builder skip a pod whose change (a status update, a
 * new resourceVersion) does not concern routing.
 */
export function routingFacts(config: RouterConfig, pod: Pod): Pod {
  const metadata = pod.metadata ?? {};
  const annotations = metadata.annotations ?? {};
  const status = pod.status ?? {};
  const picked: Record<string, string> = {};
  for (const name of routingAnnotations(config)) {
    const value = annotations[name];
    if (value !== undefined) picked[name] = value;
  }
  return {
    metadata: {
      name: metadata.name,
      namespace: metadata.namespace,
      creationTimestamp: metadata.creationTimestamp,
      deletionTimestamp: metadata.deletionTimestamp,
      labels: metadata.labels,
      annotations: picked,
    },
    spec: {
      containers: (pod.spec?.containers ?? []).map((c) => ({
        ports: (c.ports ?? []).map((p) => ({ containerPort: p.containerPort })),
      })),
    },
    status: {
      phase: status.phase,
      podIP: status.podIP,
      conditions: (status.conditions ?? [])
        .filter((c) => c.type === 'Ready')
        .map((c) => ({ type: c.type, status: c.status })),
    },
  };
}

function sameLabels(
  a: Readonly<Record<string, string>> | undefined,
  b: Readonly<Record<string, string>> | undefined,
): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

function samePorts(a: Pod, b: Pod): boolean {
  const x = a.spec?.containers ?? [];
  const y = b.spec?.containers ?? [];
  if (x.length !== y.length) return false;
  return x.every((c, i) => {
    const p = c.ports ?? [];
    const q = y[i]?.ports ?? [];
    return p.length === q.length && p.every((port, j) => port.containerPort === q[j]?.containerPort);
  });
}

function sameReadiness(a: Pod, b: Pod): boolean {
  const x = (a.status?.conditions ?? []).filter((c) => c.type === 'Ready');
  const y = (b.status?.conditions ?? []).filter((c) => c.type === 'Ready');
  return x.length === y.length && x.every((c, i) => c.status === y[i]?.status);
}

/**
 * Whether two pods have the same routing facts (labels in any order): what routingFacts
 * copies, compared in place, without serializing either pod.
 */
export function sameRoutingFacts(config: RouterConfig, a: Pod, b: Pod): boolean {
  const m = a.metadata ?? {};
  const n = b.metadata ?? {};
  return (
    m.name === n.name &&
    m.namespace === n.namespace &&
    m.creationTimestamp === n.creationTimestamp &&
    m.deletionTimestamp === n.deletionTimestamp &&
    m.annotations?.[config.hostsAnnotation] === n.annotations?.[config.hostsAnnotation] &&
    m.annotations?.[config.pathsAnnotation] === n.annotations?.[config.pathsAnnotation] &&
    m.annotations?.[config.affinityAnnotation] === n.annotations?.[config.affinityAnnotation] &&
    a.status?.phase === b.status?.phase &&
    a.status?.podIP === b.status?.podIP &&
    sameLabels(m.labels, n.labels) &&
    samePorts(a, b) &&
    sameReadiness(a, b)
  );
}

interface AnnotationFields {
  hostsField: string;
  pathsField: string;
  affinityField: string;
}

const fieldNames = new WeakMap<RouterConfig, AnnotationFields>();

/** The fields the annotations are in, as rejections name them. */
function annotationFields(config: RouterConfig): AnnotationFields {
  let names = fieldNames.get(config);
  if (names === undefined) {
    const field = (name: string): string => `metadata.annotations.${name}`;
    names = {
      hostsField: field(config.hostsAnnotation),
      pathsField: field(config.pathsAnnotation),
      affinityField: field(config.affinityAnnotation),
    };
    fieldNames.set(config, names);
  }
  return names;
}

/** A pod that routes nothing, for a reason it gives. */
function refused(rejections: Rejection[]): PodClaims {
  return { hosts: [], candidates: [], rejections };
}

/** The routes a single pod asks for, and what it asked for that cannot be had. */
export function podCandidates(config: RouterConfig, pod: Pod): PodClaims {
  const namespace = pod.metadata?.namespace ?? '';
  const name = pod.metadata?.name ?? '';
  const stateRejections = podStateRejections(config, pod, namespace, name);
  if (stateRejections.length > 0) return refused(stateRejections);

  let rejections = NO_REJECTIONS;
  const reject = (field: string, value: string, code: RejectionCode, reason: string): void => {
    if (rejections === NO_REJECTIONS) rejections = [];
    rejections.push(rejection(namespace, name, field, value, code, reason));
  };
  const annotations = pod.metadata?.annotations ?? {};
  const { hostsField, pathsField, affinityField } = annotationFields(config);
  const hostsText = annotations[config.hostsAnnotation];
  const pathsText = annotations[config.pathsAnnotation];
  if (hostsText === undefined)
    reject(hostsField, '', 'MISSING_ANNOTATION', `annotation ${config.hostsAnnotation} is missing`);
  if (pathsText === undefined)
    reject(pathsField, '', 'MISSING_ANNOTATION', `annotation ${config.pathsAnnotation} is missing`);
  if (hostsText === undefined || pathsText === undefined) return refused(rejections);

  const { hosts: validHosts, rejected: badHosts } = parseHosts(hostsText);
  for (const r of badHosts) reject(hostsField, r.value, r.code as RejectionCode, r.reason);
  const { paths: validPaths, rejected: badPaths } = parsePaths(pathsText, declaredPorts(pod));
  for (const r of badPaths) reject(pathsField, r.value, r.code as RejectionCode, r.reason);
  // Routes are hosts x paths: without a cap, one pod's annotations could ask for billions.
  const hosts = validHosts.length > config.maxHostsPerPod ? validHosts.slice(0, config.maxHostsPerPod) : validHosts;
  const paths = validPaths.length > config.maxPathsPerPod ? validPaths.slice(0, config.maxPathsPerPod) : validPaths;
  if (validHosts.length > hosts.length) {
    reject(
      hostsField,
      `${validHosts.length} hosts`,
      'TOO_MANY_HOSTS',
      `only the first ${hosts.length} valid hosts are routed (MAX_HOSTS_PER_POD); ` +
        `${validHosts.length - hosts.length} dropped, the first being ${validHosts[hosts.length]}`,
    );
  }
  if (validPaths.length > paths.length) {
    const first = validPaths[paths.length] as { port: number; path: string };
    reject(
      pathsField,
      `${validPaths.length} paths`,
      'TOO_MANY_PATHS',
      `only the first ${paths.length} valid paths are routed (MAX_PATHS_PER_POD); ` +
        `${validPaths.length - paths.length} dropped, the first being ${first.port}:${first.path}`,
    );
  }
  if (hosts.length === 0) reject(hostsField, hostsText, 'NO_HOSTS', 'no valid host in the annotation');
  if (paths.length === 0) reject(pathsField, pathsText, 'NO_PATHS', 'no valid PORT:PATH entry in the annotation');
  if (hosts.length === 0 || paths.length === 0) return refused(rejections);
  const affinityText = annotations[config.affinityAnnotation];
  let affinity: Affinity | null = null;
  if (affinityText !== undefined) {
    const parsed = parseAffinity(affinityText);
    affinity = parsed.affinity;
    if (parsed.rejected !== null) reject(affinityField, parsed.rejected.value, 'BAD_AFFINITY', parsed.rejected.reason);
  }

  const parsedCreated = Date.parse(pod.metadata?.creationTimestamp ?? '');
  const created = Number.isNaN(parsedCreated) ? Number.POSITIVE_INFINITY : parsedCreated;
  const ip = pod.status?.podIP as string;
  // Kept as long as the pod is: arrays made at their size (one that grows by push reserves
  // room for 17), and paths on one port share their backend (most pods serve one port).
  const candidates = new Array<Candidate>(paths.length);
  for (let i = 0; i < paths.length; i++) {
    const { path, port } = paths[i] as { path: string; port: number };
    let alone: PodEndpoint[] | undefined;
    for (let j = 0; j < i && alone === undefined; j++)
      if ((candidates[j] as Candidate).backend.port === port) alone = (candidates[j] as Candidate).alone;
    alone ??= [{ pod: name, namespace, ip, port }];
    candidates[i] = { path, backend: alone[0] as PodEndpoint, created, affinity, alone };
  }
  return { hosts: hosts.slice(), candidates, rejections };
}

export type ApiKey = { state: 'open' } | { state: 'key'; key: string } | { state: 'invalid'; reason: string };

/** The API key of a namespace without a usable Secret. */
export const OPEN: ApiKey = Object.freeze({ state: 'open' });

/** The API key each namespace's Secret asks for. */
export function apiKeysByNamespace(config: RouterConfig, secrets: Iterable<Secret>): Map<string, ApiKey> {
  const keys = new Map<string, ApiKey>();
  const { name, field } = config.apiKeySecret;
  for (const secret of uniqueByKey(secrets)) {
    if (secret.metadata?.name !== name) continue;
    const value = secret.data?.[field];
    if (value === undefined) continue;
    const namespace = secret.metadata.namespace ?? '';
    // The API server always hands out base64. A hand-written manifest may not; fail
    // closed rather than open, and never echo the value.
    if (value === '') {
      keys.set(namespace, { state: 'invalid', reason: `field ${field} of Secret ${name} is empty` });
    } else if (!BASE64.test(value)) {
      keys.set(namespace, { state: 'invalid', reason: `field ${field} of Secret ${name} is not base64` });
    } else {
      keys.set(namespace, { state: 'key', key: value });
    }
  }
  return keys;
}

/**
 * The route of one host and path from every pod that claims it: the owning namespace's
 * pods, or none when that namespace's API key is unusable; the other claimants are
 * rejected. The result does not depend on the order of the candidates (the rejections
 * are sorted with the table's).
 */
export function resolveRoute(
  host: string,
  path: string,
  candidates: readonly Candidate[],
  apiKeys: ReadonlyMap<string, ApiKey>,
): { route: Route | null; rejections: Rejection[] } {
  if (candidates.length === 1) {
    // Most routes have one pod: no owner to settle, nothing to sort.
    const only = candidates[0] as Candidate;
    const namespace = only.backend.namespace;
    const apiKey = apiKeys.get(namespace) ?? OPEN;
    if (apiKey.state !== 'invalid') {
      const key = apiKey.state === 'key' ? apiKey.key : null;
      const route = { host, path, namespace, apiKey: key, affinity: only.affinity, backends: only.alone };
      return { route, rejections: NO_REJECTIONS };
    }
  }
  // The namespace whose oldest pod on this route was created first owns it, so a
  // tenant cannot take over (or unlock) a route another tenant already serves. That is
  // the namespace of the candidate first by (created, namespace); Infinity (no valid
  // creationTimestamp) sorts last and equals itself.
  let first = candidates[0] as Candidate;
  for (const c of candidates) {
    if (
      c.created < first.created ||
      (c.created === first.created && compareText(c.backend.namespace, first.backend.namespace) < 0)
    )
      first = c;
  }
  const owner = first.backend.namespace;
  const routeText = `${host}${path}`;
  const rejections: Rejection[] = [];
  for (const { backend } of candidates) {
    if (backend.namespace === owner) continue;
    rejections.push({
      namespace: backend.namespace,
      pod: backend.pod,
      field: 'route',
      value: routeText,
      code: 'ROUTE_CLAIMED',
      reason: `host ${host} path ${path} is owned by namespace ${owner}, whose pods there are older`,
    });
  }
  const owned = candidates.filter((c) => c.backend.namespace === owner);
  const apiKey = apiKeys.get(owner) ?? OPEN;
  if (apiKey.state === 'invalid') {
    for (const { backend } of owned) {
      rejections.push({
        namespace: backend.namespace,
        pod: backend.pod,
        field: 'route',
        value: routeText,
        code: 'BAD_API_KEY',
        reason: `${apiKey.reason}; the namespace's routes are withheld rather than left open`,
      });
    }
    return { route: null, rejections };
  }
  const route: Route = {
    host,
    path,
    namespace: owner,
    apiKey: apiKey.state === 'key' ? apiKey.key : null,
    affinity: settleAffinity(host, path, owned, rejections),
    backends:
      owned.length === 1
        ? (owned[0] as Candidate).alone
        : owned.map((c) => c.backend).sort((a, b) => compareText(a.pod, b.pod)),
  };
  return { route, rejections };
}

function describeAffinity(affinity: Affinity | null): string {
  return affinity === null ? 'no affinity (round robin)' : `affinity ${affinity}`;
}

/**
 * The affinity of a route from the pods that serve it (one namespace's): the oldest pod
 * decides, by creation time, then pod name, as the oldest pod decides who owns a route.
 * Each pod that asks for something else stays routed, with a rejection that says what won.
 */
function settleAffinity(
  host: string,
  path: string,
  owned: readonly Candidate[],
  rejections: Rejection[],
): Affinity | null {
  let oldest = owned[0] as Candidate;
  for (const c of owned) {
    const tie = c.created === oldest.created && compareText(c.backend.pod, oldest.backend.pod) < 0;
    if (c.created < oldest.created || tie) oldest = c;
  }
  const { affinity } = oldest;
  for (const c of owned) {
    if (c.affinity === affinity) continue;
    rejections.push({
      namespace: c.backend.namespace,
      pod: c.backend.pod,
      field: 'route',
      value: `${host}${path}`,
      code: 'AFFINITY_CONFLICT',
      reason:
        `host ${host} path ${path} has ${describeAffinity(affinity)}, as its oldest pod ${oldest.backend.pod} asks; ` +
        `this pod asks for ${describeAffinity(c.affinity)} and is routed with the route's`,
    });
  }
  return affinity;
}

/** Whether two routes are the same in every field. */
export function sameRoute(a: Route, b: Route): boolean {
  if (a.host !== b.host || a.path !== b.path || a.namespace !== b.namespace || a.apiKey !== b.apiKey) return false;
  if (a.affinity !== b.affinity) return false;
  if (a.backends.length !== b.backends.length) return false;
  return a.backends.every((x, i) => {
    const y = b.backends[i];
    return y !== undefined && x.pod === y.pod && x.namespace === y.namespace && x.ip === y.ip && x.port === y.port;
  });
}

/** The key candidates of one route share; hosts and paths never hold a newline. */
export function routeKey(host: string, path: string): string {
  return `${host}\n${path}`;
}

/**
 * The reference: the whole table from all objects at once. The controller keeps it up
 * to date incrementally (incremental-table.ts), which must give the same table.
 */
export function buildRouteTable(config: RouterConfig, pods: Iterable<Pod>, secrets: Iterable<Secret>): RouteTable {
  const rejections: Rejection[] = [];
  const byRoute = new Map<string, { host: string; path: string; candidates: Candidate[] }>();
  for (const pod of uniqueByKey(pods)) {
    const claims = podCandidates(config, routingFacts(config, pod));
    rejections.push(...claims.rejections);
    for (const host of claims.hosts) {
      for (const c of claims.candidates) {
        const key = routeKey(host, c.path);
        const slot = byRoute.get(key);
        if (slot === undefined) byRoute.set(key, { host, path: c.path, candidates: [c] });
        else slot.candidates.push(c);
      }
    }
  }

  const apiKeys = apiKeysByNamespace(config, secrets);
  const routes: Route[] = [];
  for (const { host, path, candidates } of byRoute.values()) {
    const result = resolveRoute(host, path, candidates, apiKeys);
    if (result.route !== null) routes.push(result.route);
    rejections.push(...result.rejections);
  }

  routes.sort(compareRoutes);
  rejections.sort(compareRejections);
  return { routes, rejections };
}
