import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import {
  BadRequest,
  FakeEventStore,
  FakeStore,
  eventForChange,
  parseFieldSelector,
  parseLabelSelectorParam,
  type Change,
  type Kind,
  type KubeObject,
  type ObjectFilter,
  type StoredEvent,
} from './fake-api-store.js';
import { testCertificates } from './tls.js';

// A fake Kubernetes API server for Pods and Secrets, faithful to the parts the client and
// the router use: TLS with a CA the kubeconfig trusts, a bearer token, lists that carry a
// resourceVersion, watches as chunked newline-delimited JSON whose headers are flushed at
// once, replay from a resourceVersion, 410 Gone after compaction, bookmarks,
// timeoutSeconds, server-side label and field selectors, and faults on demand.

export type { Kind, KubeObject } from './fake-api-store.js';

export interface RecordedRequest {
  method: string;
  path: string;
  /** The query string exactly as sent (still percent-encoded). */
  rawQuery: string;
  query: Record<string, string>;
  watch: boolean;
  /** The HTTP status answered (200 for a watch, even one that then reports 410 in the stream). */
  status?: number;
  /** The code of an ERROR event sent in a watch stream. */
  watchErrorCode?: number;
  /** When it arrived (ms since the epoch), to count requests per second. */
  at: number;
  /** For a list answered 200: how many items it carried. */
  items?: number;
}

/** An Event write as the fake API server saw it. */
export interface EventWrite {
  /** When it arrived (ms since the epoch). */
  at: number;
  namespace: string;
  name: string;
  /** The status answered, or 'stalled' for a write never answered. */
  status: number | 'stalled';
  body?: Record<string, unknown>;
}

const EVENTS_PATH_PREFIX = '/apis/events.k8s.io/';

export interface FakeApiServerOptions {
  /** How often a watch that asked for bookmarks gets one. Default 1000 ms. */
  bookmarkIntervalMs?: number;
  /** The bearer token the server requires. */
  token?: string;
  /**
   * Keep a watch open after sending ERROR 410 instead of ending it. The real API server
   * ends it; this exists to prove a client does not wait for the end.
   */
  holdOpenAfterGone?: boolean;
}

export type StallMode = false | 'after-headers' | 'before-headers';

interface Fault {
  code: number;
  remaining: number; // Infinity until cleared
  requests: 'list' | 'watch' | 'all';
}

interface Watcher {
  filter: ObjectFilter;
  res: ServerResponse;
  /** Writes one event to the stream. */
  send(event: object): void;
  /** False for streams that must stay silent (stalled, or held open after 410). */
  live: boolean;
  close(): void;
}

const RESOURCES: Record<string, Kind> = { pods: 'Pod', secrets: 'Secret' };

/** `/api/v1/pods`, `/api/v1/namespaces/NS/secrets`, ... → what they select. */
function parseResourcePath(path: string): { kind: Kind; namespace?: string } | undefined {
  const all = /^\/api\/v1\/(pods|secrets)$/.exec(path);
  if (all) return { kind: RESOURCES[all[1] as string] as Kind };
  const ns = /^\/api\/v1\/namespaces\/([a-z0-9-]+)\/(pods|secrets)$/.exec(path);
  if (ns) return { kind: RESOURCES[ns[2] as string] as Kind, namespace: ns[1] as string };
  return undefined;
}

function statusBody(code: number, reason: string, message: string): string {
  return JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
}

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  410: 'Expired',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

function isTrue(v: string | null): boolean {
  return v === 'true' || v === '1';
}

/** List items come without kind/apiVersion, as from the real API server. */
function asListItem(obj: KubeObject): KubeObject {
  const { kind: _kind, apiVersion: _apiVersion, ...rest } = obj;
  return rest;
}

export class FakeApiServer {
  readonly store = new FakeStore();
  readonly requests: RecordedRequest[] = [];
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly watchers = new Set<Watcher>();
  private readonly pendingWatches = new Set<ServerResponse>();
  private faults: Fault[] = [];
  /** TCP connections accepted so far (each a TLS handshake). */
  connectionsAccepted = 0;
  private goneWatchesLeft = 0;
  private shortWatchesOn = false;
  private stall: StallMode = false;
  private boundPort = 0;
  private tmpDir: string | undefined;
  private readonly bookmarkIntervalMs: number;
  readonly token: string;
  private readonly holdOpenAfterGone: boolean;

  private constructor(options: FakeApiServerOptions) {
    this.bookmarkIntervalMs = options.bookmarkIntervalMs ?? 1000;
    this.token = options.token ?? 'fake-token-for-tests';
    this.holdOpenAfterGone = options.holdOpenAfterGone ?? false;
    const tls = testCertificates();
    this.server = createServer({ key: tls.serverKey, cert: tls.serverCert }, (req, res) => this.handle(req, res));
    this.server.on('connection', (socket: Socket) => {
      this.connectionsAccepted += 1;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    this.store.subscribe((change) => this.broadcast(change));
  }

  /** Starts a server on 127.0.0.1, on a free port unless one is given. */
  static async start(options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const server = new FakeApiServer(options);
    await server.listen(0);
    return server;
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    return `https://127.0.0.1:${this.boundPort}`;
  }

  get listening(): boolean {
    return this.server.listening;
  }

  // ---- objects -------------------------------------------------------------------------

  /** Creates or replaces an object (namespace defaults to "default"); returns it as stored. */
  upsert<T extends KubeObject>(obj: T): T {
    return this.store.upsert(obj);
  }

  remove(kind: Kind, namespace: string, name: string): boolean {
    return this.store.remove(kind, namespace, name);
  }

  get resourceVersion(): string {
    return String(this.store.resourceVersion);
  }

  /** Forgets history before `resourceVersion` (default: now), as etcd compaction does. */
  compact(resourceVersion?: number): void {
    this.store.compact(resourceVersion);
  }

  // ---- faults --------------------------------------------------------------------------

  /** Answers the next `count` matching requests (default: all until cleared) with `code`. */
  failRequests(code: number, options: { count?: number; requests?: 'list' | 'watch' | 'all' } = {}): void {
    this.faults.push({ code, remaining: options.count ?? Infinity, requests: options.requests ?? 'all' });
  }

  clearFaults(): void {
    this.faults = [];
    this.goneWatchesLeft = 0;
    this.cutListsLeft = 0;
    this.shortWatchesOn = false;
  }

  /**
   * New watches end cleanly right after the first event they send (a bookmark at the
   * latest), as a proxy that closes streams after a little traffic would, until turned off.
   */
  shortWatches(on: boolean): void {
    this.shortWatchesOn = on;
  }

  /**
   * The next `count` watches (default: all until cleared) are answered 200 and then ERROR
   * 410 at once, as an API server whose watch cache is behind the version asked for may do.
   */
  goneWatches(count = Infinity): void {
    this.goneWatchesLeft = count;
  }

  /**
   * New watches hang: 'after-headers' answers 200 and then sends nothing, ever;
   * 'before-headers' never even answers. Existing streams are untouched.
   */
  stallWatches(mode: StallMode): void {
    this.stall = mode;
  }

  /** Ends every open watch by destroying its connection, as a load balancer reset would. */
  dropStreams(): void {
    for (const w of [...this.watchers]) {
      w.close();
      w.res.socket?.destroy();
    }
    for (const res of [...this.pendingWatches]) res.socket?.destroy();
    this.pendingWatches.clear();
  }

  /** Watches currently streaming (stalled ones included). */
  get openWatchCount(): number {
    return this.watchers.size + this.pendingWatches.size;
  }

  // ---- lifecycle -----------------------------------------------------------------------

  /** The API server goes away: the port closes and every connection is cut. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.dropStreams();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /** Comes back on the same port with the same objects and history. */
  async restart(): Promise<void> {
    await this.listen(this.boundPort);
  }

  /** Stops for good and removes the kubeconfig file, if one was written. */
  async close(): Promise<void> {
    if (this.server.listening) await this.stop();
    if (this.tmpDir !== undefined) rmSync(this.tmpDir, { recursive: true, force: true });
    this.tmpDir = undefined;
  }

  private listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        const address = this.server.address();
        if (address !== null && typeof address === 'object') this.boundPort = address.port;
        resolve();
      });
    });
  }

  // ---- kubeconfig ----------------------------------------------------------------------

  /** A kubeconfig document trusting the test CA and carrying the server's token. */
  kubeConfigYaml(): string {
    return toYaml({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'fake',
          cluster: {
            server: this.url,
            'certificate-authority-data': Buffer.from(testCertificates().caCert).toString('base64'),
          },
        },
      ],
      users: [{ name: 'tester', user: { token: this.token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'tester' } }],
      'current-context': 'fake',
    });
  }

  /** Writes the kubeconfig to a temporary file (removed by close()) and returns its path. */
  kubeConfigFile(): string {
    this.tmpDir ??= mkdtempSync(join(tmpdir(), 'fake-kube-config-'));
    const file = join(this.tmpDir, 'kubeconfig');
    writeFileSync(file, this.kubeConfigYaml(), { mode: 0o600 });
    return file;
  }

  /** A KubeConfig loaded from that file, as the router would load it. */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromFile(this.kubeConfigFile());
    return kc;
  }

  // ---- lists: pages and resource versions --------------------------------------------------
  // As the real API server answers GET on a collection (API concepts, "Semantics for get and
  // list" and "Retrieving large results sets in chunks"): resourceVersion unset is the most
  // recent state; "0" is any state (the most recent here); another value with a limit, or with
  // resourceVersionMatch=Exact, is that exact state (410 once compacted); without a limit, or
  // with resourceVersionMatch=NotOlderThan, a state at least that new. A continue token
  // carries the revision and the last key of its page: every page of one list comes from the
  // same state. Tokens expire when the history behind them is compacted, or on demand.

  /** Called after each list answer, for tests that act between pages. */
  listPageHook: ((page: { items: number; continued: boolean; more: boolean }) => void) | undefined;
  private continueGeneration = 0;
  private cutListsLeft = 0;
  private cutListsKind: Kind = 'Pod';
  private oldestValidContinue = 0;

  /** The next `count` lists of `kind` stop halfway through their items: the connection is cut. */
  cutLists(count = 1, kind: Kind = 'Pod'): void {
    this.cutListsLeft = count;
    this.cutListsKind = kind;
  }

  /** Every continue token handed out so far is refused with 410 from now on. */
  expireContinueTokens(): void {
    this.oldestValidContinue = this.continueGeneration + 1;
  }

  /** List requests (pages included) answered so far, optionally only those that asked for a limit. */
  listRequests(options: { limited?: boolean } = {}): RecordedRequest[] {
    return this.requests.filter(
      (r) => !r.watch && parseResourcePath(r.path) !== undefined && (!options.limited || r.query.limit !== undefined),
    );
  }

  /** Stored objects never change (an update stores a new one), so their list JSON is kept. */
  private readonly listItemJsonCache = new WeakMap<KubeObject, string>();

  private listItemJson(obj: KubeObject): string {
    let json = this.listItemJsonCache.get(obj);
    if (json === undefined) {
      json = JSON.stringify(asListItem(obj));
      this.listItemJsonCache.set(obj, json);
    }
    return json;
  }

  private continueToken(revision: number, lastKey: string): string {
    this.continueGeneration += 1;
    return Buffer.from(JSON.stringify({ rv: revision, after: lastKey, gen: this.continueGeneration })).toString(
      'base64url',
    );
  }

  /** What a list request asks for, or the error the real API server would answer. */
  private planList(
    params: URLSearchParams,
  ): { revision?: number; after?: string; limit?: number } | { error: number; message: string } {
    const limitText = params.get('limit');
    const limit = limitText === null || limitText === '' ? undefined : Number(limitText);
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= 0))
      return { error: 400, message: `invalid limit: ${limitText}` };
    const paging = limit !== undefined && limit > 0 ? { limit } : {};
    const rv = params.get('resourceVersion') ?? '';
    const match = params.get('resourceVersionMatch') ?? '';
    const token = params.get('continue') ?? '';
    if (token !== '') {
      if (rv !== '' && rv !== '0')
        return { error: 400, message: 'specifying resource version is not allowed when using continue' };
      if (match !== '') return { error: 400, message: 'resourceVersionMatch is forbidden when continue is provided' };
      let decoded: { rv?: unknown; after?: unknown; gen?: unknown };
      try {
        decoded = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as typeof decoded;
      } catch {
        return { error: 400, message: 'continue key is not valid: incorrect encoded start resourceVersion' };
      }
      if (typeof decoded.rv !== 'number' || typeof decoded.after !== 'string' || typeof decoded.gen !== 'number') {
        return { error: 400, message: 'continue key is not valid' };
      }
      // An expired token: the store answers 'gone' for a revision before the oldest one kept.
      const revision = decoded.gen < this.oldestValidContinue ? -1 : decoded.rv;
      return { revision, after: decoded.after, ...paging };
    }
    if (match !== '' && match !== 'Exact' && match !== 'NotOlderThan') {
      return { error: 400, message: `resourceVersionMatch: Unsupported value: "${match}"` };
    }
    if (match !== '' && rv === '')
      return { error: 400, message: 'resourceVersionMatch is forbidden unless resourceVersion is provided' };
    if (match === 'Exact' && rv === '0')
      return { error: 400, message: 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"' };
    if (rv === '' || rv === '0') return paging;
    const revision = Number(rv);
    if (!Number.isInteger(revision) || revision < 0) return { error: 400, message: `invalid resource version: ${rv}` };
    if (revision > this.store.resourceVersion)
      return { error: 504, message: `Too large resource version: ${revision}, current: ${this.store.resourceVersion}` };
    const exact = match === 'Exact' || (match === '' && limit !== undefined && limit > 0);
    return exact ? { revision, ...paging } : paging;
  }

  // ---- assertions helpers --------------------------------------------------------------

  requestsTo(path: string, kind: 'list' | 'watch'): RecordedRequest[] {
    return this.requests.filter((r) => r.path === path && r.watch === (kind === 'watch'));
  }

  // ---- HTTP ----------------------------------------------------------------------------

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://fake');
    const watch = isTrue(url.searchParams.get('watch'));
    const record: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      rawQuery: url.search.replace(/^\?/, ''),
      query: Object.fromEntries(url.searchParams),
      watch,
      at: Date.now(),
    };
    this.requests.push(record);
    const answer = (code: number, message: string): void => {
      record.status = code;
      res.writeHead(code, { 'Content-Type': 'application/json' });
      res.end(statusBody(code, REASONS[code] ?? 'Unknown', message));
    };

    if (req.headers.authorization !== `Bearer ${this.token}`) return answer(401, 'Unauthorized');
    if (url.pathname.startsWith(EVENTS_PATH_PREFIX)) return this.handleEventWrite(req, url.pathname, record, res);
    const target = parseResourcePath(url.pathname);
    if (target === undefined || req.method !== 'GET')
      return answer(404, 'the server could not find the requested resource');

    const fault = this.takeFault(watch);
    if (fault !== undefined) {
      return answer(
        fault,
        fault === 403
          ? `${url.pathname.split('/').pop()} is forbidden: ` +
              `User "system:serviceaccount:router:router" cannot ${watch ? 'watch' : 'list'} resource`
          : 'fault injected by the test',
      );
    }

    let filter: ObjectFilter;
    try {
      filter = {
        kind: target.kind,
        ...(target.namespace !== undefined ? { namespace: target.namespace } : {}),
        ...(() => {
          const labels = parseLabelSelectorParam(url.searchParams.get('labelSelector'));
          return labels ? { labels } : {};
        })(),
        fields: parseFieldSelector(url.searchParams.get('fieldSelector')),
      };
    } catch (err) {
      if (err instanceof BadRequest) return answer(400, err.message);
      throw err;
    }

    if (watch) this.startWatch(url.searchParams, filter, record, res);
    else this.answerList(filter, record, res, url.searchParams);
  }

  private takeFault(watch: boolean): number | undefined {
    const fault = this.faults.find((f) => f.requests === 'all' || (f.requests === 'watch') === watch);
    if (fault === undefined) return undefined;
    fault.remaining -= 1;
    if (fault.remaining <= 0) this.faults = this.faults.filter((f) => f !== fault);
    return fault.code;
  }

  private answerList(
    filter: ObjectFilter,
    record: RecordedRequest,
    res: ServerResponse,
    params: URLSearchParams,
  ): void {
    const answer = (code: number, reason: string, message: string): void => {
      record.status = code;
      res.writeHead(code, { 'Content-Type': 'application/json' });
      res.end(statusBody(code, reason, message));
    };
    const plan = this.planList(params);
    if ('error' in plan) return answer(plan.error, REASONS[plan.error] ?? 'Unknown', plan.message);
    const page = this.store.listPage(filter, plan);
    if (page === 'gone') {
      return answer(
        410,
        'Expired',
        plan.after === undefined
          ? `too old resource version: ${plan.revision} (${this.store.oldestWatchableVersion})`
          : 'The provided continue parameter is too old to display a consistent list result. You can start a ' +
              'new list without the continue parameter.',
      );
    }
    const more = page.more && page.lastKey !== undefined;
    const metadata = {
      resourceVersion: String(page.revision),
      ...(more ? { continue: this.continueToken(page.revision, page.lastKey as string) } : {}),
    };
    record.status = 200;
    record.items = page.items.length;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    // In pieces of about 64 KiB: one JSON.stringify of 50,000 pods would hold it all twice.
    let piece = `{"kind":"${filter.kind}List","apiVersion":"v1","metadata":${JSON.stringify(metadata)},"items":[`;
    const cutAt = this.cutListsLeft > 0 && filter.kind === this.cutListsKind ? Math.floor(page.items.length / 2) : -1;
    if (cutAt >= 0) this.cutListsLeft -= 1;
    for (const [i, item] of page.items.entries()) {
      if (i === cutAt) {
        res.write(piece);
        res.socket?.destroy();
        return;
      }
      piece += `${i === 0 ? '' : ','}${this.listItemJson(item)}`;
      if (piece.length > 65_536) {
        res.write(piece);
        piece = '';
      }
    }
    res.end(`${piece}]}`);
    this.listPageHook?.({ items: page.items.length, continued: plan.after !== undefined, more });
  }

  private startWatch(
    params: URLSearchParams,
    filter: ObjectFilter,
    record: RecordedRequest,
    res: ServerResponse,
  ): void {
    if (this.stall === 'before-headers') {
      this.pendingWatches.add(res);
      res.on('close', () => this.pendingWatches.delete(res));
      return;
    }
    record.status = 200;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders(); // the client's watch() resolves only once it has the headers

    const timers: NodeJS.Timeout[] = [];
    const watcher: Watcher = {
      filter,
      res,
      live: false,
      send: (event) => send(event),
      close: () => {
        timers.forEach(clearTimeout);
        timers.forEach(clearInterval);
        this.watchers.delete(watcher);
      },
    };
    res.on('close', () => watcher.close());

    if (this.stall === 'after-headers') {
      // Registered (not live) so that dropStreams() can cut it.
      this.watchers.add(watcher);
      return;
    }

    const endAfterFirstEvent = this.shortWatchesOn;
    const send = (event: object): void => {
      if (res.writableEnded) return;
      res.write(`${JSON.stringify(event)}\n`);
      if (endAfterFirstEvent) {
        watcher.close();
        res.end();
      }
    };
    if (!this.replayFrom(params.get('resourceVersion'), filter, record, watcher, send)) return;
    watcher.live = true;
    this.watchers.add(watcher);
    this.startWatchTimers(params, filter, watcher, timers, send);
  }

  /**
   * What a new watch gets before live changes: the objects now for "any version", the changes
   * since `from` otherwise, or 410 Gone (when asked to, or when `from` was compacted away).
   * False when the watch ended there.
   */
  private replayFrom(
    from: string | null,
    filter: ObjectFilter,
    record: RecordedRequest,
    watcher: Watcher,
    send: (event: object) => void,
  ): boolean {
    const { res } = watcher;
    if (this.goneWatchesLeft > 0) {
      this.goneWatchesLeft -= 1;
      record.watchErrorCode = 410;
      send({
        type: 'ERROR',
        object: JSON.parse(statusBody(410, 'Expired', `too old resource version: ${from ?? ''}`)),
      });
      if (!res.writableEnded) res.end();
      return false;
    }
    if (from === null || from === '' || from === '0') {
      // "Any version": the current state as synthetic ADDED events, then changes.
      for (const obj of this.store.list(filter)) send({ type: 'ADDED', object: obj });
      return true;
    }
    const changes = this.store.changesSince(Number(from));
    if (changes === 'gone') {
      record.watchErrorCode = 410;
      send({
        type: 'ERROR',
        object: JSON.parse(
          statusBody(410, 'Expired', `too old resource version: ${from} (${this.store.oldestWatchableVersion})`),
        ),
      });
      if (this.holdOpenAfterGone) this.watchers.add(watcher);
      else if (!res.writableEnded) res.end();
      return false;
    }
    for (const change of changes) {
      const event = eventForChange(filter, change);
      if (event) send(event);
    }
    return true;
  }

  /** Bookmarks when the watch allows them, and its end after `timeoutSeconds`. */
  private startWatchTimers(
    params: URLSearchParams,
    filter: ObjectFilter,
    watcher: Watcher,
    timers: NodeJS.Timeout[],
    send: (event: object) => void,
  ): void {
    if (isTrue(params.get('allowWatchBookmarks'))) {
      timers.push(
        setInterval(() => {
          send({
            type: 'BOOKMARK',
            object: { kind: filter.kind, apiVersion: 'v1', metadata: { resourceVersion: this.resourceVersion } },
          });
        }, this.bookmarkIntervalMs),
      );
    }
    const timeoutSeconds = Number(params.get('timeoutSeconds') ?? '0');
    if (timeoutSeconds > 0) {
      timers.push(
        setTimeout(() => {
          watcher.close();
          watcher.res.end();
        }, timeoutSeconds * 1000),
      );
    }
  }

  private broadcast(change: Change): void {
    for (const w of this.watchers) {
      if (!w.live) continue;
      const event = eventForChange(w.filter, change);
      if (event) w.send(event);
    }
  }

  // ---- Events (events.k8s.io/v1) ---------------------------------------------------------
  // Creates of Events, recorded with the time they arrived; refusals (403 or any status) for
  // chosen namespaces, failures on demand, and writes that are never answered.

  readonly eventStore = new FakeEventStore();
  /** Every Event write that reached the server, in arrival order. */
  readonly eventWrites: EventWrite[] = [];
  private readonly refusedEventNamespaces = new Map<string, number>();
  private eventFault: { code: number; remaining: number } | null = null;
  private eventsStalled = false;

  /** The Events stored (created and not expired). */
  get events(): StoredEvent[] {
    return this.eventStore.list();
  }

  /** Event writes in `namespace` get `code` (403 Forbidden by default) until allowed again. */
  refuseEvents(namespace: string, code = 403): void {
    this.refusedEventNamespaces.set(namespace, code);
  }

  allowEvents(namespace: string): void {
    this.refusedEventNamespaces.delete(namespace);
  }

  /** The next `count` Event writes (default: all until cleared with count 0) get `code`. */
  failEvents(code: number, count = Infinity): void {
    this.eventFault = count > 0 ? { code, remaining: count } : null;
  }

  /** While on, Event writes are read and never answered (the client must give up by itself). */
  stallEvents(on: boolean): void {
    this.eventsStalled = on;
  }

  private handleEventWrite(req: IncomingMessage, path: string, record: RecordedRequest, res: ServerResponse): void {
    const match = /^\/apis\/events\.k8s\.io\/v1\/namespaces\/([a-z0-9-]+)\/events$/.exec(path);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const write: EventWrite = { at: Date.now(), namespace: match?.[1] ?? '', name: '', status: 0 };
      this.eventWrites.push(write);
      const answer = (code: number, reason: string, message: string, body?: string): void => {
        record.status = code;
        write.status = code;
        res.writeHead(code, { 'Content-Type': 'application/json' });
        res.end(body ?? statusBody(code, reason, message));
      };
      if (match === null || req.method !== 'POST')
        return answer(404, 'NotFound', 'the server could not find the requested resource');
      const namespace = match[1] as string;
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        return answer(400, 'BadRequest', 'the body is not JSON');
      }
      const name = (body.metadata as { name?: unknown } | undefined)?.name;
      write.name = typeof name === 'string' ? name : '';
      write.body = body;
      if (this.eventsStalled) {
        write.status = 'stalled';
        return;
      }
      const refused = this.refusedEventNamespaces.get(namespace);
      if (refused !== undefined) {
        return answer(
          refused,
          REASONS[refused] ?? 'Unknown',
          refused === 403
            ? 'events.events.k8s.io is forbidden: User "system:serviceaccount:router:router" ' +
                `cannot create resource "events" in API group "events.k8s.io" in the namespace "${namespace}"`
            : 'fault injected by the test',
        );
      }
      if (this.eventFault !== null) {
        const { code } = this.eventFault;
        if (--this.eventFault.remaining <= 0) this.eventFault = null;
        return answer(code, REASONS[code] ?? 'Unknown', 'fault injected by the test');
      }
      const result = this.eventStore.create(namespace, body);
      if (result.status === 201) return answer(201, '', '', JSON.stringify(result.event.body));
      const reason = result.status === 409 ? 'AlreadyExists' : result.status === 422 ? 'Invalid' : 'BadRequest';
      return answer(result.status, reason, result.message);
    });
  }
}
