import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Pod, Secret } from '../core/kube-objects.js';
import type { BackoffPolicy } from '../core/backoff.js';
import { CollectionWatch, type CollectionStatus } from './kube-watch.js';
import { slimPod, slimSecret, type KeptFields } from './slim-objects.js';
import type { ObjectSource } from './source.js';

export { loadKubeConfig } from './kube-client.js';

// The Kubernetes API server as a source: Pods chosen by the label selector and the API-key
// Secrets chosen by name, in all namespaces, each kept by its own resilient list + watch.
// Both selections are made by the server, on the list and on the watch alike, so the
// router never streams every Secret of the cluster.

export interface KubeSourceOptions {
  kubeConfig: KubeConfig;
  /** Label selector text for the Pods, passed to the API server as is. */
  labelSelector: string;
  /** Name of the API-key Secret looked up in every namespace. */
  secretName: string;
  logger?: Logger;
  /** Restart a watch that delivered nothing, not even a bookmark, for this long. Default 150 s. */
  quietWatchTimeoutMs?: number;
  /** Wait between failed attempts. Default 500 ms doubling up to 30 s. */
  backoff?: BackoffPolicy;
  /** Server-side lifetime of each watch request; default a random 5 to 10 minutes. */
  watchTimeoutSeconds?: number;
  /** Give up on a list (all its pages) after this long. Default 60 s. */
  listTimeoutMs?: number;
  /** Objects per list page (limit/continue). Default 500. */
  listPageSize?: number;
  /**
   * The pod annotations and the Secret data field the route table reads; everything else
   * of each object is dropped as it arrives. Default: routingHosts, routingPaths, api-key.
   */
  keep?: KeptFields;
}

export interface KubeSourceStatus {
  /** Both watches are open. */
  connected: boolean;
  pods: CollectionStatus;
  secrets: CollectionStatus;
}

export interface KubeSource extends ObjectSource {
  status(): KubeSourceStatus;
}

const DEFAULTS = {
  quietWatchTimeoutMs: 150_000, // above the API server's bookmark period (about a minute)
  backoff: { initialMs: 500, maxMs: 30_000 },
  listTimeoutMs: 60_000,
  listPageSize: 500,
  keep: { podAnnotations: ['routingHosts', 'routingPaths'], secretField: 'api-key' },
};

/** Spreads watch ends over time so that many watches do not all reconnect together. */
function randomWatchTimeoutSeconds(): number {
  return 300 + Math.floor(Math.random() * 300);
}

export function createKubeSource(options: KubeSourceOptions): KubeSource {
  let started = false;
  let loaded = false;
  let stopped = false;
  let pods: CollectionWatch<Pod> | undefined;
  let secrets: CollectionWatch<Secret> | undefined;

  const idle: CollectionStatus = {
    connected: false,
    lastError: null,
    lastErrorAt: null,
    resourceVersion: null,
    restarts: 0,
    relists: 0,
    listPages: 0,
    listRestarts: 0,
    objects: 0,
    events: { ADDED: 0, MODIFIED: 0, DELETED: 0, BOOKMARK: 0, ERROR: 0 },
  };

  return {
    async start(onChange) {
      if (started) throw new Error('the Kubernetes source was already started');
      started = true;
      if (!options.kubeConfig.getCurrentCluster()) throw new Error('the kubeconfig has no current cluster');
      const api = options.kubeConfig.makeApiClient(CoreV1Api);
      // Changes reach the core only once both sets are complete: a snapshot with the pods
      // but not yet their API keys would publish routes without authentication.
      const changed = (): void => {
        if (loaded && !stopped) onChange();
      };
      const common = {
        kubeConfig: options.kubeConfig,
        api,
        quietWatchTimeoutMs: options.quietWatchTimeoutMs ?? DEFAULTS.quietWatchTimeoutMs,
        watchTimeoutSeconds: () => options.watchTimeoutSeconds ?? randomWatchTimeoutSeconds(),
        listTimeoutMs: options.listTimeoutMs ?? DEFAULTS.listTimeoutMs,
        listPageSize: options.listPageSize ?? DEFAULTS.listPageSize,
        backoff: options.backoff ?? DEFAULTS.backoff,
        onChange: changed,
        ...(options.logger ? { logger: options.logger.child({ source: 'kubernetes' }) } : {}),
      };
      const kept = options.keep ?? DEFAULTS.keep;
      pods = new CollectionWatch<Pod>({
        ...common,
        collection: 'pods',
        selectors: { labelSelector: options.labelSelector },
        keep: (raw) => slimPod(raw, kept),
      });
      secrets = new CollectionWatch<Secret>({
        ...common,
        collection: 'secrets',
        selectors: { fieldSelector: `metadata.name=${options.secretName}` },
        keep: (raw) => slimSecret(raw, kept),
      });
      await Promise.all([pods.start(), secrets.start()]);
      loaded = true;
    },

    snapshot() {
      // In the order the watches keep them (a changed object where the old one was, a new
      // one at the end), not sorted: the table does not depend on the order, and the
      // incremental builder finds an unchanged pod by its place instead of a lookup.
      return { pods: pods?.values() ?? [], secrets: secrets?.values() ?? [] };
    },

    async stop() {
      stopped = true;
      await Promise.all([pods?.stop(), secrets?.stop()]);
    },

    status() {
      const p = pods?.status() ?? idle;
      const s = secrets?.status() ?? idle;
      return { connected: p.connected && s.connected, pods: p, secrets: s };
    },
  };
}
