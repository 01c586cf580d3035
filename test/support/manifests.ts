import { stringify } from 'yaml';
import type { Pod, Secret } from '../../src/core/kube-objects.js';
import { pod as podObject, type PodSpec } from './objects.js';
import type { TestPod } from './pods.js';

/** The Pod object for a running test pod, its port declared, serving `paths` (PATH list) on its port. */
export function podFor(testPod: TestPod, spec: Omit<PodSpec, 'ip' | 'ports' | 'paths'> & { paths: string[] }): Pod {
  return podObject(testPod.name, {
    ...spec,
    ip: testPod.ip,
    ports: [testPod.port],
    paths: spec.paths.map((p) => `${testPod.port}:${p}`).join(' '),
  });
}

/** A v1 List, as `kubectl get pods,secrets -A -o yaml` prints it. */
export function manifestText(objects: Array<Pod | Secret>): string {
  return stringify({ apiVersion: 'v1', kind: 'List', items: objects });
}
