import type { ContainerPort, ObjectMeta, Pod, Secret } from '../core/kube-objects.js';

// What the router keeps of each Pod and Secret it receives from the API server. A pod as
// served is about 5 KB of JSON (managedFields, volumes, probes, container statuses ...);
// the route table reads a few hundred bytes of it. Objects are cut down as they arrive,
// page by page and event by event, so a cluster of 50,000 pods never sits in memory whole.
//
// Kept per pod: name, namespace, uid, resourceVersion, creationTimestamp,
// deletionTimestamp, labels, the routing annotations, each container's name and ports,
// phase, podIP and the Ready condition. Per Secret: its identity and the one data field.

export interface KeptFields {
  /** Pod annotations the route table reads (hosts, paths and affinity). */
  podAnnotations: readonly string[];
  /** The Secret data field that holds the API key. */
  secretField: string;
}

type Json = Record<string, unknown>;

function record(value: unknown): Json | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : undefined;
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** Copies the listed keys that hold a value of the right type, and nothing else. */
function pick<T extends object>(
  from: Json | undefined,
  keys: ReadonlyArray<keyof T & string>,
  accept: (v: unknown) => boolean,
): T | undefined {
  if (from === undefined) return undefined;
  const out: Json = {};
  let any = false;
  for (const key of keys) {
    const v = from[key];
    if (accept(v)) {
      out[key] = v;
      any = true;
    }
  }
  return any ? (out as T) : undefined;
}

function stringMap(value: unknown, only?: readonly string[]): Record<string, string> | undefined {
  const map = record(value);
  if (map === undefined) return undefined;
  const out: Record<string, string> = {};
  let any = false;
  for (const key of only ?? Object.keys(map)) {
    const v = map[key];
    if (typeof v === 'string') {
      out[key] = v;
      any = true;
    }
  }
  return any ? out : undefined;
}

const META_STRINGS = ['name', 'namespace', 'uid', 'resourceVersion', 'creationTimestamp', 'deletionTimestamp'] as const;

/** Identity and times; with `labelsAndAnnotations`, the labels and those annotations too. */
function slimMeta(value: unknown, labelsAndAnnotations?: readonly string[]): ObjectMeta {
  const meta = record(value);
  const out: ObjectMeta = pick<ObjectMeta>(meta, META_STRINGS, (v) => typeof v === 'string') ?? {};
  if (labelsAndAnnotations === undefined) return out;
  const labels = stringMap(meta?.labels);
  if (labels !== undefined) out.labels = labels;
  const kept = stringMap(meta?.annotations, labelsAndAnnotations);
  if (kept !== undefined) out.annotations = kept;
  return out;
}

function slimPorts(value: unknown): ContainerPort[] | undefined {
  if (!Array.isArray(value)) return undefined;
  return value.map((p) => {
    const port = record(p);
    const out: ContainerPort = {};
    if (typeof port?.containerPort === 'number') out.containerPort = port.containerPort;
    const name = text(port?.name);
    if (name !== undefined) out.name = name;
    const protocol = text(port?.protocol);
    if (protocol !== undefined) out.protocol = protocol;
    return out;
  });
}

/** The parts of a Pod the router reads, from whatever the API server sent. */
export function slimPod(raw: unknown, kept: KeptFields): Pod {
  const obj = record(raw);
  const pod: Pod = { apiVersion: 'v1', kind: 'Pod', metadata: slimMeta(obj?.metadata, kept.podAnnotations) };
  const containers = record(obj?.spec)?.containers;
  if (Array.isArray(containers)) {
    pod.spec = {
      containers: containers.map((c) => {
        const container = record(c);
        const out: { name?: string; ports?: ContainerPort[] } = {};
        const name = text(container?.name);
        if (name !== undefined) out.name = name;
        const ports = slimPorts(container?.ports);
        if (ports !== undefined) out.ports = ports;
        return out;
      }),
    };
  }
  const status = record(obj?.status);
  if (status !== undefined) {
    const out: NonNullable<Pod['status']> = {};
    const phase = text(status.phase);
    if (phase !== undefined) out.phase = phase;
    const podIP = text(status.podIP);
    if (podIP !== undefined) out.podIP = podIP;
    if (Array.isArray(status.conditions)) {
      const ready = status.conditions.map(record).find((c) => c?.type === 'Ready');
      if (ready !== undefined)
        out.conditions = [{ type: 'Ready', ...(typeof ready.status === 'string' ? { status: ready.status } : {}) }];
    }
    pod.status = out;
  }
  return pod;
}

/** The identity of a Secret and its API-key field, nothing else of its data. */
export function slimSecret(raw: unknown, kept: KeptFields): Secret {
  const obj = record(raw);
  const secret: Secret = { apiVersion: 'v1', kind: 'Secret', metadata: slimMeta(obj?.metadata) };
  const data = stringMap(obj?.data, [kept.secretField]);
  if (data !== undefined) secret.data = data;
  return secret;
}
