import type { Pod, Secret } from '../../src/core/kube-objects.js';
import { slimPod } from '../../src/sources/slim-objects.js';

// The cluster the control-plane benchmarks build tables from, the one their targets are set for:
// every pod routes 2 hosts and 2 paths of its own (4 routes per pod), 100 pods per
// namespace, and every other namespace locks its routes with an API-key Secret. Pods
// carry what the API server would give them (uid, resourceVersion, status, a few labels)
// so that objects have a realistic size.

export const PODS_PER_NAMESPACE = 100;

export interface PodOptions {
  /** The pod IP of pod `i`; 10.x.y.z by default. */
  ip?: (i: number) => string;
  /** The container port every path names. */
  port?: number;
  /** Changes every resourceVersion, as a relist of changed pods would. */
  generation?: number;
}

export function namespaceOf(i: number): string {
  return `ns-${Math.floor(i / PODS_PER_NAMESPACE)}`;
}

export function hostsOf(i: number): [string, string] {
  return [`app-${i}.${namespaceOf(i)}.example.com`, `www-${i}.example.org`];
}

export function benchPod(i: number, options: PodOptions = {}): Pod {
  const namespace = namespaceOf(i);
  const port = options.port ?? 8080;
  const ip = options.ip?.(i) ?? `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: `app-${i}-7d9c5b6f4-x${(i * 7919) % 100_000}`,
      namespace,
      uid: `0b7c${String(i).padStart(8, '0')}-5e1a-4c2b-9f3d-2a6e8c1d4b7f`,
      resourceVersion: String(100_000 + i + (options.generation ?? 0) * 1_000_000),
      creationTimestamp: '2024-05-01T12:00:00Z',
      labels: { app: `app-${i}`, routable: 'true', 'pod-template-hash': '7d9c5b6f4' },
      annotations: { routingHosts: hostsOf(i).join(' '), routingPaths: `${port}:/ ${port}:/api/v1` },
    },
    spec: { containers: [{ name: 'app', ports: [{ containerPort: port, name: 'http', protocol: 'TCP' }] }] },
    status: {
      phase: 'Running',
      podIP: ip,
      conditions: [
        { type: 'Initialized', status: 'True' },
        { type: 'Ready', status: 'True' },
        { type: 'ContainersReady', status: 'True' },
        { type: 'PodScheduled', status: 'True' },
      ],
    },
  };
}

export function benchPods(count: number, options: PodOptions = {}): Pod[] {
  return Array.from({ length: count }, (_, i) => benchPod(i, options));
}

/** What the Kubernetes source keeps of each pod (src/sources/slim-objects.ts), with the default settings. */
export function slimBenchPod(i: number, options: PodOptions = {}): Pod {
  return slimPod(benchPod(i, options), { podAnnotations: ['routingHosts', 'routingPaths'], secretField: 'api-key' });
}

/** The pods as the cluster source holds them: cut down as they arrive, one by one. */
export function slimBenchPods(count: number, options: PodOptions = {}): Pod[] {
  return Array.from({ length: count }, (_, i) => slimBenchPod(i, options));
}

/** The API-key Secrets: one in every other namespace of `pods` pods. */
export function benchSecrets(pods: number): Secret[] {
  const secrets: Secret[] = [];
  for (let n = 0; n * PODS_PER_NAMESPACE < pods; n += 2) {
    secrets.push({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'routing', namespace: `ns-${n}` },
      data: { 'api-key': Buffer.from(`key of namespace ${n}`).toString('base64') },
      type: 'Opaque',
    });
  }
  return secrets;
}
