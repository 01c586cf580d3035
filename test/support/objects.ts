import type { Pod, Secret } from '../../src/core/kube-objects.js';

// Builders for the Pods and Secrets tests feed the router: a routable, running, ready
// pod unless told otherwise, so each test states only what it is about.

export interface PodSpec {
  namespace?: string;
  ip?: string;
  hosts?: string;
  paths?: string;
  ports?: number[];
  phase?: string;
  ready?: boolean;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  created?: string;
  deleting?: boolean;
  /** As the API server stamps it; manifest objects have none. */
  uid?: string;
}

export function pod(name: string, spec: PodSpec = {}): Pod {
  const annotations: Record<string, string> = { ...spec.annotations };
  if (spec.hosts !== undefined) annotations.routingHosts = spec.hosts;
  if (spec.paths !== undefined) annotations.routingPaths = spec.paths;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: spec.namespace ?? 'default',
      creationTimestamp: spec.created ?? '2024-01-01T00:00:00Z',
      ...(spec.uid === undefined ? {} : { uid: spec.uid }),
      labels: spec.labels ?? { routable: 'true' },
      annotations,
      ...(spec.deleting ? { deletionTimestamp: '2024-01-02T00:00:00Z' } : {}),
    },
    spec: {
      containers: [{ name: 'app', ports: (spec.ports ?? [80, 3000]).map((containerPort) => ({ containerPort })) }],
    },
    status: {
      phase: spec.phase ?? 'Running',
      ...(spec.ip === '' ? {} : { podIP: spec.ip ?? '10.0.0.1' }),
      conditions: [{ type: 'Ready', status: spec.ready === false ? 'False' : 'True' }],
    },
  };
}

/** The API-key Secret of a namespace; `plain` is what `kubectl create secret --from-literal` takes. */
export function apiKeySecret(namespace: string, plain: string, name = 'routing', field = 'api-key'): Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace },
    data: { [field]: Buffer.from(plain, 'utf8').toString('base64') },
  };
}
