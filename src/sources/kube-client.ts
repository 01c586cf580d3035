import { existsSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import {
  CoreV1Api,
  KubeConfig,
  ResponseContext,
  Watch,
  wrapHttpLibrary,
  type HttpLibrary,
} from '@kubernetes/client-node';
import { configHandingOverAgents, type RequestAgent } from './internals/kubernetes-client.js';
import { ListItemReader } from './list-items.js';

// How the router talks to the API server, always through @kubernetes/client-node (its
// kubeconfig handling, TLS and authentication), with the things it does not give us: raw
// JSON from list calls (the typed API turns timestamps into Date objects and drops fields
// it does not know), read as a stream so that a page is never held whole, and a way to
// cut a watch that never answered.

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
  throw new Error(
    `no Kubernetes configuration: no service account token, KUBECONFIG is not set and ${home} does not exist`,
  );
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

export interface Selectors {
  labelSelector?: string;
  fieldSelector?: string;
}

export interface ListedCollection<T> {
  items: T[];
  /** The version of the state the pages show, to start the watch from. */
  resourceVersion: string;
  /** List requests answered (one per page). */
  pages: number;
  /** Times the list started over because its continue token expired (410). */
  restarts: number;
}

export interface ListOptions<T> {
  signal: AbortSignal;
  /** Objects per page (the `limit` parameter). */
  pageSize: number;
  /** Turns each raw item into what is kept, page by page, so no whole list is ever held raw. */
  keep: (raw: unknown) => T;
}

interface Page<T> {
  items: T[];
  metadata?: { resourceVersion?: string; continue?: string };
}

/**
 * The client's transport for one list page, except that a 2xx body is read as it arrives,
 * item by item, into `keep`: the client never holds the page (2.5 MB of JSON for 500
 * pods) and builds no model objects for it. The request (URL, query, authentication
 * headers, TLS agent) is the client's own. Error bodies reach the client untouched.
 */
function streamingTransport<T>(
  keep: (raw: unknown) => T,
  page: Page<T>,
  signal: AbortSignal,
  connection: ListConnection,
): HttpLibrary {
  return wrapHttpLibrary({
    send: (request) =>
      new Promise<ResponseContext>((resolve, reject) => {
        const url = new URL(request.getUrl());
        const send = url.protocol === 'http:' ? httpRequest : httpsRequest;
        const agent = connection.agentFor(request.getAgent());
        const req = send(
          url,
          {
            method: request.getHttpMethod().toString(),
            headers: request.getHeaders(),
            signal,
            ...(agent ? { agent } : {}),
          },
          (res) => {
            const status = res.statusCode ?? 0;
            const headers = Object.fromEntries(
              Object.entries(res.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : (v ?? '')]),
            );
            const answer = (text: string): void =>
              resolve(
                new ResponseContext(status, headers, { text: async () => text, binary: async () => Buffer.from(text) }),
              );
            res.setEncoding('utf8');
            // A connection cut in the middle of the body ends here too ("aborted").
            res.on('error', reject);
            if (status < 200 || status > 299) {
              let text = '';
              res.on('data', (chunk: string) => (text += chunk));
              res.on('end', () => answer(text));
              return;
            }
            const reader = new ListItemReader((item) => void page.items.push(keep(item)));
            res.on('data', (chunk: string) => {
              try {
                reader.write(chunk);
              } catch (err) {
                req.destroy(err as Error);
              }
            });
            res.on('end', () => {
              try {
                Object.assign(page, reader.end());
                // The client parses what it gets into model classes; it gets nothing to parse.
                answer('{"items":[]}');
              } catch (err) {
                reject(err);
              }
            });
          },
        );
        req.on('error', reject);
        req.end();
      }),
  });
}

/**
 * One connection for all the pages of a list. The client makes a new agent for every
 * request (a new TLS context and handshake each time: about 4 ms of CPU per page); its
 * first one, with the same TLS options and kept alive, serves them all. Agents of other
 * kinds (proxies) are used as the client made them.
 */
class ListConnection {
  private agent: HttpsAgent | HttpAgent | undefined;

  agentFor(made: HttpsAgent | HttpAgent | undefined): HttpsAgent | HttpAgent | undefined {
    if (made === undefined || (made.constructor !== HttpsAgent && made.constructor !== HttpAgent)) return made;
    if (this.agent === undefined) {
      const Kind = made.constructor as typeof HttpsAgent;
      this.agent = new Kind({ ...(made as HttpsAgent).options, keepAlive: true, maxSockets: 1 });
    }
    made.destroy();
    return this.agent;
  }

  close(): void {
    this.agent?.destroy();
  }
}

/** One page, its items already cut down by `keep`. */
async function listPage<T>(
  api: CoreV1Api,
  collection: Collection,
  request: Selectors & { limit: number; _continue?: string },
  keep: (raw: unknown) => T,
  signal: AbortSignal,
  connection: ListConnection,
): Promise<Page<T>> {
  const page: Page<T> = { items: [] };
  const options = { httpApi: streamingTransport(keep, page, signal, connection) };
  if (collection === 'pods') await api.listPodForAllNamespaces(request, options);
  else await api.listSecretForAllNamespaces(request, options);
  return page;
}

/**
 * Lists a collection in all namespaces with the client's CoreV1Api, in pages of
 * `pageSize` (limit/continue), keeping the server's raw JSON cut down by `keep`. No
 * resourceVersion is sent: the first page is the most recent state (a quorum read) and the
 * continue token holds every later page to that same state, so the list is consistent and
 * never older than anything a watch delivered before it. A token that expired midway
 * (410) starts the list over once; a second expiry is an error for the caller's backoff.
 */
export async function listAllNamespaces<T>(
  api: CoreV1Api,
  collection: Collection,
  selectors: Selectors,
  options: ListOptions<T>,
): Promise<ListedCollection<T>> {
  const connection = new ListConnection();
  let pages = 0;
  const listOnce = async (): Promise<{ items: T[]; resourceVersion: string | undefined }> => {
    const items: T[] = [];
    let token: string | undefined;
    let resourceVersion: string | undefined;
    do {
      // List items come without kind and apiVersion, watch objects with them; keep()
      // makes both alike, whichever way an object arrived.
      const request = { ...selectors, limit: options.pageSize, ...(token ? { _continue: token } : {}) };
      const page = await listPage(api, collection, request, options.keep, options.signal, connection).catch(
        (err: unknown) => {
          throw token !== undefined && statusCodeOf(err) === 410 ? new ContinueExpired(err) : err;
        },
      );
      pages += 1;
      for (const item of page.items) items.push(item);
      resourceVersion ??= page.metadata?.resourceVersion;
      token = page.metadata?.continue || undefined;
    } while (token !== undefined);
    return { items, resourceVersion };
  };
  try {
    let restarts = 0;
    let listed;
    try {
      listed = await listOnce();
    } catch (err) {
      if (!(err instanceof ContinueExpired)) throw err;
      restarts += 1;
      listed = await listOnce().catch((again: unknown) => {
        throw again instanceof ContinueExpired ? again.cause : again;
      });
    }
    if (!listed.resourceVersion) throw new Error(`listing ${collection} returned no resourceVersion`);
    return { items: listed.items, resourceVersion: listed.resourceVersion, pages, restarts };
  } finally {
    connection.close();
  }
}

/** A continue token refused with 410 in the middle of a list. */
class ContinueExpired extends Error {
  constructor(override readonly cause: unknown) {
    super('the continue token expired');
  }
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
 * kubeconfig creates for the request (internals/kubernetes-client.ts) and destroy it to
 * cut a server that never answers. `onDone` is called exactly once, with the error if the
 * stream failed.
 */
export function openWatch(
  kc: KubeConfig,
  path: string,
  query: Record<string, string | number | boolean | undefined>,
  onEvent: (event: WatchEvent) => void,
  onDone: (err: unknown) => void,
): OpenedWatch {
  let agent: RequestAgent | undefined;
  let controller: AbortController | undefined;
  let aborted = false;
  let done = false;
  const finish = (err: unknown): void => {
    if (done) return;
    done = true;
    onDone(err);
  };
  // Same configuration, but we see the agent the client creates for this one request.
  const capturing = configHandingOverAgents(kc, (created) => {
    agent = created;
    if (aborted) agent?.destroy?.();
  });
  const answered = new Watch(capturing)
    .watch(
      path,
      query,
      (type, object) => onEvent({ type, object }),
      (err) => finish(err ?? null),
    )
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
