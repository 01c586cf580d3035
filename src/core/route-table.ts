import { isIP } from 'node:net';
import { parseHosts, parsePaths } from './annotations.js';
import type { RouterConfig } from './config.js';
import { dnsLabelProblem, dnsSubdomainProblem } from './kube-names.js';
import type { Pod, Secret } from './kube-objects.js';
import { objectKey } from './kube-objects.js';
import { matchesLabels } from './label-selector.js';

// The route table is a pure function of (config, pods, secrets): the same objects give
// the same table, byte for byte, whatever order they arrive in. Every pod, host or path
// that does not become a route leaves a rejection saying why.

export interface Backend {
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
  /** In pod-name order, which is the round-robin order. */
  backends: Backend[];
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
  | 'BAD_API_KEY';

export interface RouteTable {
  routes: Route[];
  rejections: Rejection[];
}

/** A pod's claim on one host and path, before ownership and API keys are settled. */
export interface Candidate extends Backend {
  host: string;
  path: string;
  created: number;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

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

/** Reasons the pod as a whole cannot be routed (its state, not its annotations). */
function podStateRejections(config: RouterConfig, pod: Pod, namespace: string, name: string): Rejection[] {
  const out: Rejection[] = [];
  const reject = (field: string, value: string, code: RejectionCode, reason: string): void => {
    out.push({ namespace, pod: name, field, value, code, reason });
  };
  if (!matchesLabels(config.labelSelector, pod.metadata?.labels)) {
    reject('metadata.labels', describeLabels(pod.metadata?.labels), 'NOT_SELECTED', `labels do not match the selector "${config.labelSelector.text}"`);
    return out;
  }
  const nsProblem = dnsLabelProblem(namespace);
  if (nsProblem !== null) reject('metadata.namespace', namespace, 'BAD_NAME', `namespace name ${nsProblem}`);
  const nameProblem = dnsSubdomainProblem(name);
  if (nameProblem !== null) reject('metadata.name', name, 'BAD_NAME', `pod name ${nameProblem}`);
  if (out.length > 0) return out;

  if (pod.metadata?.deletionTimestamp) {
    reject('metadata.deletionTimestamp', pod.metadata.deletionTimestamp, 'TERMINATING', 'pod is terminating');
  }
  const phase = pod.status?.phase ?? '';
  if (phase !== 'Running') reject('status.phase', phase, 'NOT_RUNNING', `pod is not running (phase ${JSON.stringify(phase)})`);
  const ip = pod.status?.podIP ?? '';
  if (ip === '') reject('status.podIP', '', 'NO_IP', 'pod has no IP address yet');
  else if (isIP(ip) === 0) reject('status.podIP', ip, 'BAD_IP', `pod IP ${JSON.stringify(ip)} is not an IPv4 or IPv6 address`);
  if (config.requireReady) {
    const ready = pod.status?.conditions?.find((c) => c.type === 'Ready')?.status ?? 'missing';
    if (ready !== 'True') {
      reject('status.conditions', `Ready=${ready}`, 'NOT_READY', `pod is not ready (Ready condition is ${ready})`);
    }
  }
  return out;
}

/**
 * The parts of a pod its routes depend on, as a Pod: podCandidates is only ever given
 * these, so a field it reads must be copied here or it is missing in every test. Two pods
 * with the same facts route alike, which lets the incremental builder skip a pod whose
 * change (a status update, a new resourceVersion) does not concern routing.
 */
export function routingFacts(config: RouterConfig, pod: Pod): Pod {
  const metadata = pod.metadata ?? {};
  const annotations = metadata.annotations ?? {};
  const status = pod.status ?? {};
  const picked: Record<string, string> = {};
  for (const name of [config.hostsAnnotation, config.pathsAnnotation]) {
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
    spec: { containers: (pod.spec?.containers ?? []).map((c) => ({ ports: (c.ports ?? []).map((p) => ({ containerPort: p.containerPort })) })) },
    status: {
      phase: status.phase,
      podIP: status.podIP,
      conditions: (status.conditions ?? []).filter((c) => c.type === 'Ready').map((c) => ({ type: c.type, status: c.status })),
    },
  };
}

/** The routes a single pod asks for, and what it asked for that cannot be had. */
export function podCandidates(config: RouterConfig, pod: Pod): { candidates: Candidate[]; rejections: Rejection[] } {
  const namespace = pod.metadata?.namespace ?? '';
  const name = pod.metadata?.name ?? '';
  const rejections = podStateRejections(config, pod, namespace, name);
  if (rejections.length > 0) return { candidates: [], rejections };

  const reject = (field: string, value: string, code: RejectionCode, reason: string): void => {
    rejections.push({ namespace, pod: name, field, value, code, reason });
  };
  const annotations = pod.metadata?.annotations ?? {};
  const hostsField = `metadata.annotations.${config.hostsAnnotation}`;
  const pathsField = `metadata.annotations.${config.pathsAnnotation}`;
  const hostsText = annotations[config.hostsAnnotation];
  const pathsText = annotations[config.pathsAnnotation];
  if (hostsText === undefined) reject(hostsField, '', 'MISSING_ANNOTATION', `annotation ${config.hostsAnnotation} is missing`);
  if (pathsText === undefined) reject(pathsField, '', 'MISSING_ANNOTATION', `annotation ${config.pathsAnnotation} is missing`);
  if (hostsText === undefined || pathsText === undefined) return { candidates: [], rejections };

  const { hosts: validHosts, rejected: badHosts } = parseHosts(hostsText);
  for (const r of badHosts) reject(hostsField, r.value, r.code as RejectionCode, r.reason);
  const { paths: validPaths, rejected: badPaths } = parsePaths(pathsText, declaredPorts(pod));
  for (const r of badPaths) reject(pathsField, r.value, r.code as RejectionCode, r.reason);
  // Routes are hosts x paths: without a cap, one pod's annotations could ask for billions.
  const hosts = validHosts.slice(0, config.maxHostsPerPod);
  const paths = validPaths.slice(0, config.maxPathsPerPod);
  if (validHosts.length > hosts.length) {
    reject(hostsField, `${validHosts.length} hosts`, 'TOO_MANY_HOSTS', `only the first ${hosts.length} valid hosts are routed (MAX_HOSTS_PER_POD); ${validHosts.length - hosts.length} dropped, the first being ${validHosts[hosts.length]}`);
  }
  if (validPaths.length > paths.length) {
    const first = validPaths[paths.length] as { port: number; path: string };
    reject(pathsField, `${validPaths.length} paths`, 'TOO_MANY_PATHS', `only the first ${paths.length} valid paths are routed (MAX_PATHS_PER_POD); ${validPaths.length - paths.length} dropped, the first being ${first.port}:${first.path}`);
  }
  if (hosts.length === 0) reject(hostsField, hostsText, 'NO_HOSTS', 'no valid host in the annotation');
  if (paths.length === 0) reject(pathsField, pathsText, 'NO_PATHS', 'no valid PORT:PATH entry in the annotation');
  if (hosts.length === 0 || paths.length === 0) return { candidates: [], rejections };

  const parsedCreated = Date.parse(pod.metadata?.creationTimestamp ?? '');
  const created = Number.isNaN(parsedCreated) ? Number.POSITIVE_INFINITY : parsedCreated;
  const ip = pod.status?.podIP as string;
  const candidates: Candidate[] = [];
  for (const host of hosts) {
    for (const { port, path } of paths) {
      candidates.push({ host, path, pod: name, namespace, ip, port, created });
    }
  }
  return { candidates, rejections };
}

export type ApiKey = { state: 'open' } | { state: 'key'; key: string } | { state: 'invalid'; reason: string };

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
export function resolveRoute(candidates: readonly Candidate[], apiKeys: ReadonlyMap<string, ApiKey>): { route: Route | null; rejections: Rejection[] } {
  const rejections: Rejection[] = [];
  const { host, path } = candidates[0] as Candidate;
  if (candidates.length === 1) {
    // Most routes have one pod: no owner to settle, nothing to sort.
    const { pod, namespace, ip, port } = candidates[0] as Candidate;
    const apiKey = apiKeys.get(namespace) ?? { state: 'open' };
    if (apiKey.state !== 'invalid') {
      const route = { host, path, namespace, apiKey: apiKey.state === 'key' ? apiKey.key : null, backends: [{ pod, namespace, ip, port }] };
      return { route, rejections };
    }
  }
  // The namespace whose oldest pod on this route was created first owns it, so a
  // tenant cannot take over (or unlock) a route another tenant already serves. That is
  // the namespace of the candidate first by (created, namespace); Infinity (no valid
  // creationTimestamp) sorts last and equals itself.
  let first = candidates[0] as Candidate;
  for (const c of candidates) {
    if (c.created < first.created || (c.created === first.created && compareText(c.namespace, first.namespace) < 0)) first = c;
  }
  const owner = first.namespace;
  const routeText = `${host}${path}`;
  for (const c of candidates) {
    if (c.namespace === owner) continue;
    rejections.push({
      namespace: c.namespace,
      pod: c.pod,
      field: 'route',
      value: routeText,
      code: 'ROUTE_CLAIMED',
      reason: `host ${host} path ${path} is owned by namespace ${owner}, whose pods there are older`,
    });
  }
  const owned = candidates.filter((c) => c.namespace === owner);
  const apiKey = apiKeys.get(owner) ?? { state: 'open' };
  if (apiKey.state === 'invalid') {
    for (const c of owned) {
      rejections.push({
        namespace: c.namespace,
        pod: c.pod,
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
    backends: owned
      .map(({ pod, namespace, ip, port }) => ({ pod, namespace, ip, port }))
      .sort((a, b) => compareText(a.pod, b.pod)),
  };
  return { route, rejections };
}

/** Whether two routes are the same in every field. */
export function sameRoute(a: Route, b: Route): boolean {
  if (a.host !== b.host || a.path !== b.path || a.namespace !== b.namespace || a.apiKey !== b.apiKey) return false;
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
  const byRoute = new Map<string, Candidate[]>();
  for (const pod of uniqueByKey(pods)) {
    const result = podCandidates(config, routingFacts(config, pod));
    rejections.push(...result.rejections);
    for (const c of result.candidates) {
      const key = routeKey(c.host, c.path);
      const list = byRoute.get(key);
      if (list === undefined) byRoute.set(key, [c]);
      else list.push(c);
    }
  }

  const apiKeys = apiKeysByNamespace(config, secrets);
  const routes: Route[] = [];
  for (const candidates of byRoute.values()) {
    const result = resolveRoute(candidates, apiKeys);
    if (result.route !== null) routes.push(result.route);
    rejections.push(...result.rejections);
  }

  routes.sort(compareRoutes);
  rejections.sort(compareRejections);
  return { routes, rejections };
}

/** The table with API keys hidden, for logs, the CLI and admin output. */
export function redactTable(table: RouteTable): RouteTable {
  return {
    routes: table.routes.map((r) => ({ ...r, apiKey: r.apiKey === null ? null : '<redacted>' })),
    rejections: table.rejections,
  };
}
