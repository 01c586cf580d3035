import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import {
  CoreV1Api,
  KubeConfig,
  Observable,
  ResponseContext,
  Watch,
  type ObservableMiddleware,
  type RequestContext,
} from '@kubernetes/client-node';

// How the router talks to the API server, always through @kubernetes/client-node (its
// kubeconfig handling, TLS and authentication), with the two things it does not give us:
// raw JSON from list calls (the typed API turns timestamps into Date objects and drops
// fields it does not know) and a way to cut a watch that never answered.

export const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export interface KubeConfigLocation {
  env?: NodeJS.ProcessEnv;
  serviceAccountToken?: string;
  home?: string;
}

/**
 * In-cluster when the service account token is mounted, else the files named by
 * KUBECONFIG, else ~/.kube/config. Throws when there is none of them, rather than falling
 * back (as the client's loadFromDefault does) to a guess at http://localhost:8080.
 */
export function loadKubeConfig(where: KubeConfigLocation = {}): KubeConfig {
  const env = where.env ?? process.env;
  const kc = new KubeConfig();
  if (existsSync(where.serviceAccountToken ?? SERVICE_ACCOUNT_TOKEN)) {
    kc.loadFromCluster();
    return kc;
  }
  const files = (env.KUBECONFIG ?? '').split(delimiter).filter((f) => f !== '');
  const [first, ...more] = files;
  if (first !== undefined) {
    kc.loadFromFile(first);
    for (const file of more) {
      const extra = new KubeConfig();
      extra.loadFromFile(file);
      kc.mergeConfig(extra);
    }
    return kc;
  }
  const home = join(where.home ?? homedir(), '.kube', 'config');
  if (existsSync(home)) {
    kc.loadFromFile(home);
    return kc;
  }
  throw new Error(`no Kubernetes configuration: no service account token, KUBECONFIG is not set and ${home} does not exist`);
}

/** An error the API server answered with an HTTP status (403, 410, 500 ...). */
export class ApiStatusError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** The HTTP status an error from the client carries, if any. */
export function statusCodeOf(err: unknown): number | undefined {
  if (err instanceof ApiStatusError) return err.statusCode;
  if (typeof err === 'object' && err !== null) {
    const e = err as { statusCode?: unknown; code?: unknown };
    if (typeof e.statusCode === 'number') return e.statusCode;
    if (typeof e.code === 'number') return e.code; // ApiException
  }
  return undefined;
}

/**
 * A one-line account of a failure: the client's ApiException message spans lines and
 * repeats the headers, while the Status body the server sent says what went wrong.
 */
export function describeError(err: unknown): string {
  const code = statusCodeOf(err);
  const body = (err as { body?: unknown } | null)?.body;
  if (code !== undefined && typeof body === 'string') {
    try {
      const status = JSON.parse(body) as { reason?: string; message?: string };
      if (status.message) return `${code} ${status.reason ?? ''}: ${status.message}`.replace(' :', ':');
    } catch {
      // not a Status: fall through to the generic form
    }
  }
  const message = err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err);
  return code === undefined || message.startsWith(String(code)) ? message : `${code} ${message}`;
}

export type Collection = 'pods' | 'secrets';

const KIND_OF: Record<Collection, string> = { pods: 'Pod', secrets: 'Secret' };

export interface Selectors {
  labelSelector?: string;
  fieldSelector?: string;
}

export interface RawList<T> {
  items: T[];
  resourceVersion: string;
}

/**
 * Lists a collection in all namespaces with the client's CoreV1Api, keeping the server's
 * raw JSON. A middleware copies the body before the client deserializes it into classes;
 * the typed result is thrown away.
 */
export async function listAllNamespaces<T>(
  api: CoreV1Api,
  collection: Collection,
  selectors: Selectors,
  signal: AbortSignal,
): Promise<RawList<T>> {
  let body: string | undefined;
  const keepRawBody: ObservableMiddleware = {
    pre: (ctx: RequestContext) => {
      ctx.setSignal(signal);
      return new Observable(Promise.resolve(ctx));
    },
    post: (rsp: ResponseContext) =>
      new Observable(
        (async () => {
          if (rsp.httpStatusCode < 200 || rsp.httpStatusCode > 299) return rsp;
          const text = await rsp.body.text();
          body = text;
          return new ResponseContext(rsp.httpStatusCode, rsp.headers, {
            text: async () => text,
            binary: async () => Buffer.from(text, 'utf8'),
          });
        })(),
      ),
  };
  const options = { middleware: [keepRawBody], middlewareMergeStrategy: 'append' as const };
  const request = { ...selectors };
  if (collection === 'pods') await api.listPodForAllNamespaces(request, options);
  else await api.listSecretForAllNamespaces(request, options);
  if (body === undefined) throw new Error(`listing ${collection} returned no body`);
  const parsed = JSON.parse(body) as { items?: T[] | null; metadata?: { resourceVersion?: string } };
  const resourceVersion = parsed.metadata?.resourceVersion;
  if (!resourceVersion) throw new Error(`listing ${collection} returned no resourceVersion`);
  // List items come without kind and apiVersion, watch objects with them: make both alike
  // so that an object looks the same whichever way it arrived.
  const items = (parsed.items ?? []).map((item) => ({ apiVersion: 'v1', kind: KIND_OF[collection], ...item }));
  return { items, resourceVersion };
}

export interface WatchEvent {
  type: string;
  object: unknown;
}

export interface OpenedWatch {
  /** Ends the stream, whether or not the server ever answered. Idempotent. */
  abort(): void;
  /** Settles when the server answered with headers (or the attempt failed). */
  answered: Promise<void>;
}

/**
 * Starts a watch with the client's Watch. Its watch() only resolves when response headers
 * arrive and it offers no way to cancel before that, so we keep the HTTP agent the
 * kubeconfig creates for the request and destroy it to cut a server that never answers.
 * `onDone` is called exactly once, with the error if the stream failed.
 */
export function openWatch(
  kc: KubeConfig,
  path: string,
  query: Record<string, string | number | boolean | undefined>,
  onEvent: (event: WatchEvent) => void,
  onDone: (err: unknown) => void,
): OpenedWatch {
  let agent: { destroy?: () => void } | undefined;
  let controller: AbortController | undefined;
  let aborted = false;
  let done = false;
  const finish = (err: unknown): void => {
    if (done) return;
    done = true;
    onDone(err);
  };
  // Same configuration, but we see the agent the client creates for this one request.
  const capturing = Object.create(kc) as KubeConfig;
  capturing.applyToFetchOptions = async (opts) => {
    const init = await kc.applyToFetchOptions(opts);
    agent = init.agent as typeof agent;
    if (aborted) agent?.destroy?.();
    return init;
  };
  const answered = new Watch(capturing)
    .watch(path, query, (type, object) => onEvent({ type, object }), (err) => finish(err ?? null))
    .then(
      (c) => {
        controller = c;
        if (aborted) c.abort();
      },
      (err: unknown) => finish(err),
    );
  return {
    answered,
    abort() {
      if (aborted) return;
      aborted = true;
      controller?.abort();
      agent?.destroy?.();
      finish(null);
    },
  };
}
