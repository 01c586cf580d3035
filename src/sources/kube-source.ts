import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Pod, Secret } from '../core/kube-objects.js';
import type { BackoffPolicy } from '../core/backoff.js';
import { defaultConfig, withDefaults, type RouterConfig } from '../core/config.js';
import { routingAnnotations } from '../core/route-table.js';
import { selfCheckKubernetesClient } from './internals/kubernetes-client.js';
import { CollectionWatch, type CollectionStatus } from './kube-watch.js';
import { slimPod, slimSecret, type KeptFields } from './slim-objects.js';
import type { ObjectSource } from './source.js';

export { loadKubeConfig } from './kube-client.js';

// The Kubernetes API server as a source: Pods chosen by the label selector and the API-key
// Secrets chosen by name, in all namespaces, each kept by its own resilient list + watch.
// Both selections are made by the server, on the list and on the watch alike, so the
// router never streams every Secret of the cluster.

/** What the source runs with; each one left out of KubeSourceOptions takes the setting's default. */
export interface KubeSourceSettings {
  /** ROUTABLE_LABEL_SELECTOR: the Pods', passed to the API server as is. */
  labelSelector: string;
  /** API_KEY_SECRET_LOCATION's name: the API-key Secret looked up in every namespace. */
  secretName: string;
  /**
   * The pod annotations and the Secret data field the route table reads (HOSTS_ANNOTATION,
   * PATHS_ANNOTATION, AFFINITY_ANNOTATION, API_KEY_SECRET_LOCATION's field); the rest of each object is dropped
   * as it arrives.
   */
  keep: KeptFields;
  /** Wait between failed attempts: 500 ms doubling up to WATCH_BACKOFF_MAX_MS. */
  backoff: BackoffPolicy;
  /** Restart a watch that delivered nothing, not even a bookmark, for this long. */
  quietWatchTimeoutMs: number;
  /** Give up on a list (all its pages) after this long. */
  listTimeoutMs: number;
  /** Objects per list page (limit/continue). */
  listPageSize: number;
}

export interface KubeSourceOptions extends Partial<KubeSourceSettings> {
  kubeConfig: KubeConfig;
  logger?: Logger;
  /** Server-side lifetime of each watch request; by default a random 5 to 10 minutes. */
  watchTimeoutSeconds?: number;
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

/** Above the API server's bookmark period (about a minute). */
const QUIET_WATCH_TIMEOUT_MS = 150_000;
const LIST_TIMEOUT_MS = 60_000;
const LIST_PAGE_SIZE = 500;
/** The first wait after a failure; WATCH_BACKOFF_MAX_MS bounds the doubling (and this, if lower). */
const INITIAL_BACKOFF_MS = 500;

/** The source's settings as `run` gives them: from the router's configuration. */
export function kubeSourceOptionsFrom(config: RouterConfig): KubeSourceSettings {
  return {
    labelSelector: config.labelSelector.text,
    secretName: config.apiKeySecret.name,
    keep: { podAnnotations: routingAnnotations(config), secretField: config.apiKeySecret.field },
    backoff: { initialMs: Math.min(INITIAL_BACKOFF_MS, config.watchBackoffMaxMs), maxMs: config.watchBackoffMaxMs },
    quietWatchTimeoutMs: QUIET_WATCH_TIMEOUT_MS,
    listTimeoutMs: LIST_TIMEOUT_MS,
    listPageSize: LIST_PAGE_SIZE,
  };
}

/** What a source made with `options` runs with: each setting not given takes its default. */
export function resolveKubeSourceOptions(options: Partial<KubeSourceSettings>): KubeSourceSettings {
  return withDefaults(kubeSourceOptionsFrom(defaultConfig()), options);
}

/** Spreads watch ends over time so that many watches do not all reconnect together. */
function randomWatchTimeoutSeconds(): number {
  return 300 + Math.floor(Math.random() * 300);
}

/** The status of a collection not watched yet. */
const IDLE: CollectionStatus = {
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

export function createKubeSource(options: KubeSourceOptions): KubeSource {
  const settings = resolveKubeSourceOptions(options);
  let started = false;
  let loaded = false;
  let stopped = false;
  let pods: CollectionWatch<Pod> | undefined;
  let secrets: CollectionWatch<Secret> | undefined;

  return {
    async start(onChange) {
      if (started) throw new Error('the Kubernetes source was already started');
      started = true;
      if (!options.kubeConfig.getCurrentCluster()) throw new Error('the kubeconfig has no current cluster');
      // The client is used through an internal: stop here, in one line, if it changed.
      await selfCheckKubernetesClient();
      const api = options.kubeConfig.makeApiClient(CoreV1Api);
      // Changes reach the core only once both sets are complete: a snapshot with the pods
      // but not yet their API keys would publish routes without authentication.
      const changed = (): void => {
        if (loaded && !stopped) onChange();
      };
      const common = {
        kubeConfig: options.kubeConfig,
        api,
        quietWatchTimeoutMs: settings.quietWatchTimeoutMs,
        watchTimeoutSeconds: () => options.watchTimeoutSeconds ?? randomWatchTimeoutSeconds(),
        listTimeoutMs: settings.listTimeoutMs,
        listPageSize: settings.listPageSize,
        backoff: settings.backoff,
        onChange: changed,
        ...(options.logger ? { logger: options.logger.child({ source: 'kubernetes' }) } : {}),
      };
      const kept = settings.keep;
      pods = new CollectionWatch<Pod>({
        ...common,
        collection: 'pods',
        selectors: { labelSelector: settings.labelSelector },
        keep: (raw) => slimPod(raw, kept),
      });
      secrets = new CollectionWatch<Secret>({
        ...common,
        collection: 'secrets',
        selectors: { fieldSelector: `metadata.name=${settings.secretName}` },
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
      const p = pods?.status() ?? IDLE;
      const s = secrets?.status() ?? IDLE;
      return { connected: p.connected && s.connected, pods: p, secrets: s };
    },
  };
}
