import { setTimeout as sleep } from 'node:timers/promises';
import type { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { jitteredBackoffDelay, type BackoffPolicy } from '../core/backoff.js';
import { objectKey, type ObjectMeta } from '../core/kube-objects.js';
import {
  ApiStatusError,
  describeError,
  listAllNamespaces,
  openWatch,
  type Collection,
  type Selectors,
  type WatchEvent,
} from './kube-client.js';

// One collection (pods or secrets) kept current by list + watch, made resilient around
// what @kubernetes/client-node's Watch does not do by itself: it gives up on any error,
// never notices a stream gone quiet, and after a 410 ERROR waits for the stream to end.
// The loop here restarts on every failure with backoff, resumes from the last
// resourceVersion it saw (bookmarks included), and relists at once on 410 Gone after a
// watch that worked. Lists come in pages; every object is cut down to what the router
// reads (keep) as it arrives.
//
// The request rate has a bound whatever the API server does: attempts (a list if needed,
// then a watch) start at least half the initial backoff apart, and only a watch that worked
// (it delivered something or lasted HEALTHY_WATCH_MS) lets the next attempt start without
// the backoff, which otherwise doubles up to its maximum.

export interface CollectionStatus {
  /** A watch stream is open right now. */
  connected: boolean;
  lastError: string | null;
  lastErrorAt: string | null;
  /** The resourceVersion the next watch resumes from; null before the first list. */
  resourceVersion: string | null;
  /** Watches (re)started after the first one, for whatever reason. */
  restarts: number;
  /** Full lists after the first one (after 410 Gone). */
  relists: number;
  /** List requests answered, one per page. */
  listPages: number;
  /** Lists started over because their continue token expired midway (410). */
  listRestarts: number;
  objects: number;
  /** Watch events received, by type (for the metrics). */
  events: WatchEventCounts;
}

export interface WatchEventCounts {
  ADDED: number;
  MODIFIED: number;
  DELETED: number;
  BOOKMARK: number;
  ERROR: number;
}

export interface CollectionWatchOptions<T> {
  kubeConfig: KubeConfig;
  api: CoreV1Api;
  collection: Collection;
  selectors: Selectors;
  /** Restart a watch on which nothing, not even a bookmark, arrived for this long. */
  quietWatchTimeoutMs: number;
  /** The server-side timeoutSeconds of each watch request. */
  watchTimeoutSeconds: () => number;
  listTimeoutMs: number;
  /** Objects per list page. */
  listPageSize: number;
  backoff: BackoffPolicy;
  /** What is kept of each object received (list item or watch event). */
  keep: (raw: unknown) => T;
  logger?: Logger;
  /** Called after every change of the set once the first list is in. */
  onChange: () => void;
}

type Ending =
  { kind: 'ended' } | { kind: 'gone' } | { kind: 'failed'; err: unknown } | { kind: 'quiet' } | { kind: 'stopped' };

/** How a watch ended, and whether it worked for a while before (which resets the backoff). */
type Outcome = Ending & { healthy: boolean };

/** A stream that ran this long or delivered anything was fine; ending it is routine. */
const HEALTHY_WATCH_MS = 5_000;

interface Meta {
  metadata?: ObjectMeta;
}

function resourceVersionOf(obj: unknown): string | undefined {
  const rv = (obj as Meta | null)?.metadata?.resourceVersion;
  return typeof rv === 'string' && rv !== '' ? rv : undefined;
}

export class CollectionWatch<T extends Meta> {
  private readonly objects = new Map<string, T>();
  private resourceVersion: string | undefined;
  private loaded = false;
  private stopped = false;
  private connected = false;
  private lastError: string | null = null;
  private lastErrorAt: string | null = null;
  private restarts = 0;
  private degraded = false;
  private relists = 0;
  private listPages = 0;
  private listRestarts = 0;
  private readonly events: WatchEventCounts = { ADDED: 0, MODIFIED: 0, DELETED: 0, BOOKMARK: 0, ERROR: 0 };
  private readonly stopper = new AbortController();
  private endCurrentWatch: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private readonly path: string;

  constructor(private readonly options: CollectionWatchOptions<T>) {
    this.path = `/api/v1/${options.collection}`;
  }

  /** Runs until stop(); resolves once the first list is in, retrying it meanwhile. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.loop = this.run(resolve).then(
        () => {
          if (!this.loaded) reject(new Error(`stopped before ${this.options.collection} could be listed`));
        },
        (err: unknown) => {
          // Only a bug gets here; it must not become an unhandled rejection that ends the process.
          this.recordError('watch loop ended', err);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopper.abort();
    this.endCurrentWatch?.();
    await this.loop;
  }

  values(): T[] {
    return [...this.objects.values()];
  }

  status(): CollectionStatus {
    return {
      connected: this.connected,
      lastError: this.lastError,
      lastErrorAt: this.lastErrorAt,
      resourceVersion: this.resourceVersion ?? null,
      restarts: this.restarts,
      relists: this.relists,
      listPages: this.listPages,
      listRestarts: this.listRestarts,
      objects: this.objects.size,
      events: { ...this.events },
    };
  }

  private async run(onLoaded: () => void): Promise<void> {
    let failures = 0;
    let watches = 0;
    let lastAttemptAt = -Infinity;
    const wait = (ms: number): Promise<unknown> =>
      sleep(ms, undefined, { signal: this.stopper.signal }).catch(() => undefined);
    const backOff = async (): Promise<void> => {
      failures += 1;
      const delay = jitteredBackoffDelay(failures, this.options.backoff);
      this.options.logger?.debug({ collection: this.options.collection, delayMs: delay, failures }, 'backing off');
      await wait(delay);
    };
    const minAttemptGapMs = this.options.backoff.initialMs / 2;

    while (!this.stopped) {
      // Even a server that ends every watch at once, cleanly, is not hammered.
      const early = lastAttemptAt + minAttemptGapMs - performance.now();
      if (early > 0) await wait(early);
      if (this.stopped) break;
      lastAttemptAt = performance.now();
      const listed = this.resourceVersion === undefined;
      if (listed) {
        try {
          await this.relist();
        } catch (err) {
          if (this.stopped) break;
          this.recordError('list failed', err);
          await backOff();
          continue;
        }
        if (this.stopped) break;
        // The backoff is not reset here: only a watch that works shows the server is fine
        // again (a server may answer lists and refuse every watch).
        if (!this.loaded) {
          this.loaded = true;
          onLoaded();
        }
      }
      if (watches++ > 0) this.restarts += 1;
      let outcome: Outcome;
      try {
        outcome = await this.watchOnce(this.resourceVersion as string);
      } catch (err) {
        outcome = { kind: 'failed', err, healthy: false }; // never let a surprise end the loop
      }
      // A stream that worked for a while and then broke is a new incident, not a repeat.
      if (outcome.healthy) failures = 0;
      switch (outcome.kind) {
        case 'stopped':
          break;
        case 'gone':
          // The version we hold was compacted away: only a fresh list tells what changed.
          this.options.logger?.info({ collection: this.options.collection }, 'watch expired (410 Gone), listing again');
          this.resourceVersion = undefined;
          this.relists += 1;
          // At once, unless the version was fresh from a list: a server that answers every
          // watch with 410 (a lagging watch cache) must not get a full list each time.
          if (listed && !outcome.healthy) await backOff();
          break;
        case 'ended':
          // Routine (timeoutSeconds) unless it ended at once, which must not become a busy loop.
          if (!outcome.healthy) await backOff();
          break;
        case 'quiet':
          this.recordError('watch restarted', new Error(`nothing received for ${this.options.quietWatchTimeoutMs} ms`));
          await backOff();
          break;
        case 'failed':
          this.recordError('watch failed', outcome.err);
          await backOff();
          break;
      }
    }
    this.connected = false;
  }

  /** Lists everything again and replaces the set: objects deleted meanwhile disappear. */
  private async relist(): Promise<void> {
    const signal = AbortSignal.any([this.stopper.signal, AbortSignal.timeout(this.options.listTimeoutMs)]);
    const list = await listAllNamespaces<T>(this.options.api, this.options.collection, this.options.selectors, {
      signal,
      pageSize: this.options.listPageSize,
      keep: this.options.keep,
    });
    this.listPages += list.pages;
    this.listRestarts += list.restarts;
    if (this.stopped) return;
    const next = new Map<string, T>();
    for (const item of list.items) {
      if (item?.metadata?.name) next.set(objectKey(item), item);
    }
    const changed =
      next.size !== this.objects.size ||
      [...next].some(([key, obj]) => resourceVersionOf(this.objects.get(key)) !== resourceVersionOf(obj));
    this.objects.clear();
    for (const [key, obj] of next) this.objects.set(key, obj);
    this.resourceVersion = list.resourceVersion;
    if (changed) this.notify();
  }

  private watchOnce(fromVersion: string): Promise<Outcome> {
    return new Promise((resolve) => {
      const startedAt = Date.now();
      let settled = false;
      let sawEvent = false;
      let quietTimer: NodeJS.Timeout | undefined;
      let handle: { abort(): void } | undefined;

      const settle = (ending: Ending): void => {
        if (settled) return;
        settled = true;
        clearTimeout(quietTimer);
        this.connected = false;
        this.endCurrentWatch = undefined;
        handle?.abort();
        resolve({ ...ending, healthy: sawEvent || Date.now() - startedAt >= HEALTHY_WATCH_MS });
      };
      const armQuietTimer = (): void => {
        clearTimeout(quietTimer);
        quietTimer = setTimeout(() => settle({ kind: 'quiet' }), this.options.quietWatchTimeoutMs);
      };

      this.endCurrentWatch = () => settle({ kind: 'stopped' });
      armQuietTimer();
      const opened = openWatch(
        this.options.kubeConfig,
        this.path,
        {
          ...this.options.selectors,
          resourceVersion: fromVersion,
          allowWatchBookmarks: true,
          timeoutSeconds: this.options.watchTimeoutSeconds(),
        },
        (event) => {
          if (settled) return;
          // An ERROR is not a sign of a working stream: a server answering every watch with
          // one must meet the backoff.
          if (event.type !== 'ERROR') sawEvent = true;
          armQuietTimer();
          const outcome = this.apply(event);
          if (outcome !== undefined) settle(outcome);
        },
        (err) => {
          if (err) settle({ kind: 'failed', err });
          else settle({ kind: 'ended' });
        },
      );
      handle = opened;
      if (settled) opened.abort(); // stopped or timed out before openWatch returned
      void opened.answered.then(() => {
        if (settled) return;
        this.connected = true;
        if (this.degraded) this.options.logger?.info({ collection: this.options.collection }, 'watching again');
        this.degraded = false;
      });
    });
  }

  /** Applies one watch event; returns how the watch ends when the event ends it. */
  private apply(event: WatchEvent): Ending | undefined {
    const { type, object } = event;
    if (Object.hasOwn(this.events, type)) this.events[type as keyof WatchEventCounts]++;
    if (type === 'ERROR') {
      const status = object as { code?: number; message?: string } | null;
      const code = typeof status?.code === 'number' ? status.code : 500;
      // The client would wait for the server to close the stream; we do not.
      if (code === 410) return { kind: 'gone' };
      return { kind: 'failed', err: new ApiStatusError(code, status?.message ?? 'error event in the watch stream') };
    }
    const rv = resourceVersionOf(object);
    if (type === 'BOOKMARK') {
      if (rv !== undefined) this.resourceVersion = rv;
      return undefined;
    }
    if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED') return undefined;
    if (!(object as Meta | null)?.metadata?.name) return undefined;
    const obj = this.options.keep(object);
    if (type === 'DELETED') this.objects.delete(objectKey(obj));
    else this.objects.set(objectKey(obj), obj);
    if (rv !== undefined) this.resourceVersion = rv;
    this.notify();
    return undefined;
  }

  private notify(): void {
    if (!this.loaded || this.stopped) return;
    try {
      this.options.onChange();
    } catch (err) {
      // A listener's bug must not look like an API failure nor stop the watch.
      this.options.logger?.error(
        { collection: this.options.collection, err: describeError(err) },
        'change listener threw',
      );
    }
  }

  private recordError(what: string, err: unknown): void {
    this.lastError = `${what}: ${describeError(err)}`;
    this.lastErrorAt = new Date().toISOString();
    this.degraded = true;
    this.options.logger?.warn(
      { collection: this.options.collection, err: describeError(err) },
      `${this.options.collection} ${what}`,
    );
  }
}
