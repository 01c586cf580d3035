import type { Pod } from '../../src/core/kube-objects.js';

// Pods as a real cluster serves them (`kubectl get pod -o json` of a Deployment's pod): the
// fields the router reads, and the many it does not (managedFields, volumes, probes,
// container statuses, ...), at about 4 KB of JSON each. Big-cluster measurements and the
// tests that prove the router keeps only what it needs use these.

export interface ClusterShape {
  /** Pods are spread over this many namespaces. Default 50. */
  namespaces?: number;
  /** Consecutive pods share one host (a Deployment's replicas). Default 10. */
  podsPerHost?: number;
}

function hex(n: number, width: number): string {
  return (n >>> 0).toString(16).padStart(width, '0').slice(-width);
}

/** What the parts of pod number `i` share. */
interface PodFacts {
  i: number;
  namespaces: number;
  app: number;
  namespace: string;
  templateHash: string;
  name: string;
  ip: string;
  created: string;
  labels: Record<string, string>;
}

/** Pod number `i` of a cluster: routable, running and ready, with the router's two annotations. */
export function clusterPod(i: number, shape: ClusterShape = {}): Pod {
  const namespaces = shape.namespaces ?? 50;
  const perHost = shape.podsPerHost ?? 10;
  const app = Math.floor(i / perHost);
  const namespace = `team-${app % namespaces}`;
  const templateHash = hex(app * 2654435761, 10);
  const name = `app-${app}-${templateHash}-${hex(i * 40503, 5)}`;
  const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255 || 1}`;
  const created = '2024-05-01T10:00:00Z';
  const labels = { app: `app-${app}`, 'pod-template-hash': templateHash, routable: 'true', tier: 'web' };
  const f: PodFacts = { i, namespaces, app, namespace, templateHash, name, ip, created, labels };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: metadataOf(f),
    spec: specOf(f),
    status: statusOf(f),
  } as unknown as Pod;
}

/** Metadata as the API server keeps it, managed fields included. */
// eslint-disable-next-line max-lines-per-function -- declarative: a pod's metadata as the API server serves it
function metadataOf(f: PodFacts): Record<string, unknown> {
  const { app, namespace, templateHash, name, created, labels } = f;
  return {
    name,
    generateName: `app-${app}-${templateHash}-`,
    namespace,
    creationTimestamp: created,
    labels,
    annotations: {
      routingHosts: `app-${app}.big.test`,
      routingPaths: '8080:/',
      'kubectl.kubernetes.io/restartedAt': '2024-05-01T09:59:00Z',
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': '9090',
    },
    ownerReferences: [
      {
        apiVersion: 'apps/v1',
        kind: 'ReplicaSet',
        name: `app-${app}-${templateHash}`,
        uid: `rs-${hex(app, 8)}-0000-4000-8000-000000000000`,
        controller: true,
        blockOwnerDeletion: true,
      },
    ],
    managedFields: [
      {
        manager: 'kube-controller-manager',
        operation: 'Update',
        apiVersion: 'v1',
        time: created,
        fieldsType: 'FieldsV1',
        fieldsV1: {
          'f:metadata': {
            'f:annotations': { '.': {}, 'f:routingHosts': {}, 'f:routingPaths': {} },
            'f:generateName': {},
            'f:labels': { '.': {}, 'f:app': {}, 'f:pod-template-hash': {}, 'f:routable': {}, 'f:tier': {} },
            'f:ownerReferences': { '.': {}, [`k:{"uid":"rs-${hex(app, 8)}"}`]: {} },
          },
          'f:spec': {
            'f:containers': {
              'k:{"name":"app"}': {
                '.': {},
                'f:env': {},
                'f:image': {},
                'f:imagePullPolicy': {},
                'f:livenessProbe': {},
                'f:name': {},
                'f:ports': {},
                'f:readinessProbe': {},
                'f:resources': {},
              },
            },
            'f:dnsPolicy': {},
            'f:restartPolicy': {},
            'f:schedulerName': {},
            'f:securityContext': {},
            'f:terminationGracePeriodSeconds': {},
          },
        },
      },
      {
        manager: 'kubelet',
        operation: 'Update',
        apiVersion: 'v1',
        time: created,
        fieldsType: 'FieldsV1',
        subresource: 'status',
        fieldsV1: {
          'f:status': {
            'f:conditions': {
              'k:{"type":"ContainersReady"}': {},
              'k:{"type":"Initialized"}': {},
              'k:{"type":"Ready"}': {},
            },
            'f:containerStatuses': {},
            'f:hostIP': {},
            'f:phase': {},
            'f:podIP': {},
            'f:podIPs': {},
            'f:startTime': {},
          },
        },
      },
    ],
  };
}

/** A Deployment pod's spec: one container, probes, volumes. */
// eslint-disable-next-line max-lines-per-function -- declarative: a pod's spec as the API server serves it
function specOf(f: PodFacts): Record<string, unknown> {
  const { i, namespaces, app } = f;
  return {
    volumes: [
      {
        name: `kube-api-access-${hex(i, 5)}`,
        projected: {
          sources: [
            { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
            { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
            {
              downwardAPI: {
                items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }],
              },
            },
          ],
          defaultMode: 420,
        },
      },
      { name: 'config', configMap: { name: `app-${app}-config`, defaultMode: 420 } },
    ],
    containers: [
      {
        name: 'app',
        image: `registry.example.com/team-${app % namespaces}/app:1.${app % 17}.${i % 5}`,
        ports: [
          { name: 'http', containerPort: 8080, protocol: 'TCP' },
          { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
        ],
        env: [
          { name: 'APP_NAME', value: `app-${app}` },
          { name: 'LOG_LEVEL', value: 'info' },
          { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
          { name: 'POD_IP', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' } } },
        ],
        resources: { limits: { cpu: '500m', memory: '256Mi' }, requests: { cpu: '100m', memory: '128Mi' } },
        volumeMounts: [
          { name: 'config', mountPath: '/etc/app' },
          {
            name: `kube-api-access-${hex(i, 5)}`,
            readOnly: true,
            mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
          },
        ],
        livenessProbe: {
          httpGet: { path: '/healthz', port: 8080, scheme: 'HTTP' },
          initialDelaySeconds: 5,
          timeoutSeconds: 1,
          periodSeconds: 10,
          successThreshold: 1,
          failureThreshold: 3,
        },
        readinessProbe: {
          httpGet: { path: '/ready', port: 8080, scheme: 'HTTP' },
          timeoutSeconds: 1,
          periodSeconds: 5,
          successThreshold: 1,
          failureThreshold: 3,
        },
        terminationMessagePath: '/dev/termination-log',
        terminationMessagePolicy: 'File',
        imagePullPolicy: 'IfNotPresent',
        securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true },
      },
    ],
    restartPolicy: 'Always',
    terminationGracePeriodSeconds: 30,
    dnsPolicy: 'ClusterFirst',
    serviceAccountName: 'default',
    serviceAccount: 'default',
    nodeName: `node-${i % 200}`,
    securityContext: {},
    schedulerName: 'default-scheduler',
    tolerations: [
      { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
    ],
    priority: 0,
    enableServiceLinks: true,
    preemptionPolicy: 'PreemptLowerPriority',
  };
}

/** A running, ready pod's status. */
function statusOf(f: PodFacts): Record<string, unknown> {
  const { i, namespaces, app, ip, created } = f;
  return {
    phase: 'Running',
    conditions: [
      { type: 'PodReadyToStartContainers', status: 'True', lastProbeTime: null, lastTransitionTime: created },
      { type: 'Initialized', status: 'True', lastProbeTime: null, lastTransitionTime: created },
      { type: 'Ready', status: 'True', lastProbeTime: null, lastTransitionTime: created },
      { type: 'ContainersReady', status: 'True', lastProbeTime: null, lastTransitionTime: created },
      { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: created },
    ],
    hostIP: `192.168.${Math.floor((i % 200) / 250)}.${(i % 200) + 1}`,
    hostIPs: [{ ip: `192.168.0.${(i % 200) + 1}` }],
    podIP: ip,
    podIPs: [{ ip }],
    startTime: created,
    containerStatuses: [
      {
        name: 'app',
        state: { running: { startedAt: created } },
        lastState: {},
        ready: true,
        restartCount: 0,
        image: `registry.example.com/team-${app % namespaces}/app:1.${app % 17}.${i % 5}`,
        imageID: `registry.example.com/team-${app % namespaces}/app@sha256:${hex(app * 7919, 8).repeat(8)}`,
        containerID: `containerd://${hex(i * 104729, 8).repeat(8)}`,
        started: true,
      },
    ],
    qosClass: 'Burstable',
  };
}
