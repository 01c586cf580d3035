import { matchesLabels, parseLabelSelector, type LabelSelector } from '../../src/core/label-selector.js';
import type { ObjectMeta } from '../../src/core/kube-objects.js';
import { dnsSubdomainProblem, qualifiedNameProblem } from '../../src/core/kube-names.js';

// The state behind the fake API server: objects, one resourceVersion counter shared by all
// kinds (as etcd's revision is), the history of changes that watches replay from a given
// resourceVersion, and the selector semantics of the real API server. No I/O here.

export type Kind = 'Pod' | 'Secret';

/** Any Pod or Secret; fields beyond these are stored and served untouched. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
}

export interface Change {
  resourceVersion: number;
  kind: Kind;
  /** The object before the change; absent when it was created. */
  before?: KubeObject;
  /** The object after the change; absent when it was deleted. */
  after?: KubeObject;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface FieldRequirement {
  field: 'metadata.name' | 'metadata.namespace';
  equal: boolean;
  value: string;
}

/** What one list or watch request selects. */
export interface ObjectFilter {
  kind: Kind;
  namespace?: string;
  labels?: LabelSelector;
  fields: FieldRequirement[];
}

export class BadRequest extends Error {}

const SUPPORTED_FIELDS = new Set(['metadata.name', 'metadata.namespace']);

/** Parses `a=b,c!=d` as the API server does for the fields every kind supports. */
export function parseFieldSelector(text: string | null | undefined): FieldRequirement[] {
  if (text === null || text === undefined || text.trim() === '') return [];
  return text.split(',').map((part) => {
    const m = /^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(part);
    if (m === null) throw new BadRequest(`invalid field selector: "${part}"`);
    const [, field, op, value] = m as unknown as [string, string, string, string];
    if (!SUPPORTED_FIELDS.has(field)) throw new BadRequest(`field label not supported: ${field}`);
    return { field: field as FieldRequirement['field'], equal: op !== '!=', value };
  });
}

export function parseLabelSelectorParam(text: string | null | undefined): LabelSelector | undefined {
  if (text === null || text === undefined || text.trim() === '') return undefined;
  try {
    return parseLabelSelector(text);
  } catch (err) {
    throw new BadRequest(`unable to parse requirement: ${(err as Error).message}`);
  }
}

export function matchesFilter(filter: ObjectFilter, obj: KubeObject): boolean {
  const meta = obj.metadata ?? {};
  if (filter.namespace !== undefined && meta.namespace !== filter.namespace) return false;
  if (filter.labels !== undefined && !matchesLabels(filter.labels, meta.labels)) return false;
  return filter.fields.every((r) => {
    const actual = r.field === 'metadata.name' ? meta.name : meta.namespace;
    return (actual === r.value) === r.equal;
  });
}

/**
 * The event a watcher with this filter sees for a change, if any. Like the real API
 * server, an object that stops matching is reported DELETED and one that starts matching
 * ADDED, so a client never keeps an object it was not asked for.
 */
export function eventForChange(
  filter: ObjectFilter,
  change: Change,
): { type: WatchEventType; object: KubeObject } | undefined {
  if (change.kind !== filter.kind) return undefined;
  const wasIn = change.before !== undefined && matchesFilter(filter, change.before);
  if (change.after === undefined) {
    if (!wasIn || change.before === undefined) return undefined;
    return { type: 'DELETED', object: withResourceVersion(change.before, change.resourceVersion) };
  }
  const isIn = matchesFilter(filter, change.after);
  if (isIn) return { type: wasIn ? 'MODIFIED' : 'ADDED', object: change.after };
  if (wasIn) return { type: 'DELETED', object: change.after };
  return undefined;
}

function withResourceVersion(obj: KubeObject, rv: number): KubeObject {
  return { ...obj, metadata: { ...obj.metadata, resourceVersion: String(rv) } };
}

/** etcd orders keys by their bytes; for these ASCII keys, by UTF-16 code units alike. */
function compareBytewise(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The index of the first key greater than `key` in sorted `keys`. */
function upperBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((keys[mid] as string) <= key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

const API_VERSION = 'v1';

export class FakeStore {
  private revision = 100; // a real cluster never starts at 0; tests must not depend on it
  private nextUid = 1;
  private oldestWatchable = 0;
  private readonly objects: Record<Kind, Map<string, KubeObject>> = { Pod: new Map(), Secret: new Map() };
  private history: Change[] = [];
  private readonly listeners = new Set<(change: Change) => void>();

  get resourceVersion(): number {
    return this.revision;
  }

  /** Creates or replaces an object, stamping it as the API server would. */
  upsert<T extends KubeObject>(input: T): T {
    const kind = input.kind;
    if (kind !== 'Pod' && kind !== 'Secret')
      throw new Error(`fake API server stores Pods and Secrets, not ${String(kind)}`);
    const name = input.metadata?.name;
    const namespace = input.metadata?.namespace ?? 'default';
    if (!name) throw new Error('object needs metadata.name');
    const key = keyOf(namespace, name);
    const before = this.objects[kind].get(key);
    const rv = ++this.revision;
    const after: T = structuredClone({
      ...input,
      apiVersion: API_VERSION,
      kind,
      metadata: {
        ...input.metadata,
        name,
        namespace,
        uid:
          before?.metadata?.uid ??
          input.metadata?.uid ??
          `00000000-0000-4000-8000-${String(this.nextUid++).padStart(12, '0')}`,
        creationTimestamp:
          before?.metadata?.creationTimestamp ??
          input.metadata?.creationTimestamp ??
          new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
        resourceVersion: String(rv),
      },
    });
    this.objects[kind].set(key, after);
    this.record({ resourceVersion: rv, kind, ...(before ? { before } : {}), after });
    return structuredClone(after);
  }

  /** Deletes an object; false when there was none. */
  remove(kind: Kind, namespace: string, name: string): boolean {
    const key = keyOf(namespace, name);
    const before = this.objects[kind].get(key);
    if (before === undefined) return false;
    this.objects[kind].delete(key);
    this.record({ resourceVersion: ++this.revision, kind, before });
    return true;
  }

  get(kind: Kind, namespace: string, name: string): KubeObject | undefined {
    const obj = this.objects[kind].get(keyOf(namespace, name));
    return obj === undefined ? undefined : structuredClone(obj);
  }

  /** The objects the filter selects, in the API server's order (namespace/name, bytewise), as copies. */
  list(filter: ObjectFilter): KubeObject[] {
    const page = this.listPage(filter, {});
    if (page === 'gone') throw new Error('the current revision is always available');
    return page.items.map((o) => structuredClone(o));
  }

  /** The changes after `resourceVersion`, or 'gone' when history that old was compacted. */
  changesSince(resourceVersion: number): Change[] | 'gone' {
    if (resourceVersion < this.oldestWatchable) return 'gone';
    return this.history.filter((c) => c.resourceVersion > resourceVersion);
  }

  /** Forgets history up to `before` (default: now): watching from older versions gets 410 Gone. */
  compact(before = this.revision): void {
    this.oldestWatchable = Math.max(this.oldestWatchable, before);
    this.history = this.history.filter((c) => c.resourceVersion > before);
  }

  get oldestWatchableVersion(): number {
    return this.oldestWatchable;
  }

  subscribe(listener: (change: Change) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private record(change: Change): void {
    // A key came or went: the sorted keys are made again when next needed.
    if (change.before === undefined || change.after === undefined) this.sortedKeys[change.kind] = null;
    this.history.push(change);
    for (const listener of [...this.listeners]) listener(change);
  }

  // ---- lists at a revision, in pages ------------------------------------------------------
  // What paginated lists need: the objects as they were at a revision (reconstructed from the
  // history, so only revisions not compacted away can be served, as with etcd) and a stable
  // order to page through (the order of etcd keys: namespace/name, compared bytewise).

  private readonly sortedKeys: Record<Kind, string[] | null> = { Pod: null, Secret: null };

  private currentKeys(kind: Kind): string[] {
    let keys = this.sortedKeys[kind];
    if (keys === null) {
      keys = [...this.objects[kind].keys()].sort(compareBytewise);
      this.sortedKeys[kind] = keys;
    }
    return keys;
  }

  /**
   * The objects of `kind` as they were at `revision` (default: now), keys in order, or
   * 'gone' when the history needed to go back that far was compacted.
   */
  stateAt(kind: Kind, revision = this.revision): { keys: string[]; get(key: string): KubeObject | undefined } | 'gone' {
    const current = this.objects[kind];
    if (revision >= this.revision) return { keys: this.currentKeys(kind), get: (key) => current.get(key) };
    if (revision < this.oldestWatchable) return 'gone';
    // Undo the changes made after `revision`, newest first, so the oldest one's `before` wins.
    const undone = new Map<string, KubeObject | undefined>();
    for (let i = this.history.length - 1; i >= 0; i--) {
      const change = this.history[i] as Change;
      if (change.resourceVersion <= revision) break;
      if (change.kind !== kind) continue;
      const obj = change.after ?? change.before;
      const key = keyOf(obj?.metadata?.namespace ?? '', obj?.metadata?.name ?? '');
      undone.set(key, change.before);
    }
    if (undone.size === 0) return { keys: this.currentKeys(kind), get: (key) => current.get(key) };
    const keys = [...new Set([...this.currentKeys(kind), ...undone.keys()])]
      .filter((key) => (undone.has(key) ? undone.get(key) !== undefined : true))
      .sort(compareBytewise);
    return { keys, get: (key) => (undone.has(key) ? undone.get(key) : current.get(key)) };
  }

  /**
   * Up to `limit` objects the filter selects at `revision`, after the key `after`, in key
   * order; `more` says whether any selected object follows. The stored objects themselves
   * (callers serialize them at once): copying 50,000 pods would make the fake the bottleneck.
   */
  listPage(
    filter: ObjectFilter,
    options: { revision?: number; after?: string; limit?: number },
  ): { items: KubeObject[]; revision: number; lastKey?: string; more: boolean } | 'gone' {
    const revision = options.revision ?? this.revision;
    const state = this.stateAt(filter.kind, revision);
    if (state === 'gone') return 'gone';
    const limit = options.limit ?? Infinity;
    let i = options.after === undefined ? 0 : upperBound(state.keys, options.after);
    const items: KubeObject[] = [];
    let lastKey: string | undefined;
    for (; i < state.keys.length && items.length < limit; i++) {
      const key = state.keys[i] as string;
      const obj = state.get(key);
      if (obj !== undefined && matchesFilter(filter, obj)) {
        items.push(obj);
        lastKey = key;
      }
    }
    let more = false;
    for (; i < state.keys.length && !more; i++) {
      const obj = state.get(state.keys[i] as string);
      more = obj !== undefined && matchesFilter(filter, obj);
    }
    return { items, revision, ...(lastKey !== undefined ? { lastKey } : {}), more };
  }
}

// ---- Events (events.k8s.io/v1) ---------------------------------------------------------
// Event writes, kept apart from Pods and Secrets: they are never listed or watched by the
// router, only created. Validation is the API server's for an events.k8s.io/v1 create
// (the strict one), so an Event the fake accepts is one a real cluster would accept.

export interface StoredEvent {
  namespace: string;
  name: string;
  /** The body as the client sent it. */
  body: Record<string, unknown>;
  createdAt: number;
}

export type EventCreateResult = { status: 201; event: StoredEvent } | { status: 409 | 400 | 422; message: string };

const MICRO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$/;

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** What the API server's validation of an events.k8s.io/v1 create says is wrong (empty: nothing). */
export function eventProblems(namespace: string, body: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const metadata = (body.metadata ?? {}) as Record<string, unknown>;
  const regarding = (body.regarding ?? {}) as Record<string, unknown>;
  const nameProblem = dnsSubdomainProblem(text(metadata.name));
  if (nameProblem !== null) problems.push(`metadata.name: ${nameProblem}`);
  if (regarding.namespace !== undefined && regarding.namespace !== namespace)
    problems.push('regarding.namespace: does not match event.namespace');
  const required = ['reportingController', 'reportingInstance', 'action', 'reason'] as const;
  for (const field of required) if (text(body[field]) === '') problems.push(`${field}: Required value`);
  const controllerProblem = qualifiedNameProblem(text(body.reportingController));
  if (text(body.reportingController) !== '' && controllerProblem !== null)
    problems.push(`reportingController: ${controllerProblem}`);
  for (const [field, max] of [
    ['reportingInstance', 128],
    ['action', 128],
    ['reason', 128],
    ['note', 1024],
  ] as const) {
    if (Buffer.byteLength(text(body[field]), 'utf8') > max)
      problems.push(`${field}: can have at most ${max} characters`);
  }
  if (body.type !== 'Normal' && body.type !== 'Warning') problems.push(`type: has invalid value: ${String(body.type)}`);
  for (const field of ['deprecatedFirstTimestamp', 'deprecatedLastTimestamp', 'deprecatedCount', 'deprecatedSource']) {
    if (body[field] !== undefined) problems.push(`${field}: needs to be unset`);
  }
  return problems;
}

export class FakeEventStore {
  private readonly events = new Map<string, StoredEvent>();

  /** Creates an Event as the API server would, or says why not (409 when the name is taken). */
  create(namespace: string, body: Record<string, unknown>): EventCreateResult {
    const metadata = (body.metadata ?? {}) as Record<string, unknown>;
    if (metadata.namespace !== undefined && metadata.namespace !== namespace) {
      return {
        status: 400,
        message: 'the namespace of the provided object does not match the namespace sent on the request',
      };
    }
    // MicroTime fails to decode before validation runs: a 400, as from the real server.
    if (!MICRO_TIME.test(text(body.eventTime))) {
      return {
        status: 400,
        message:
          `unable to parse eventTime ${JSON.stringify(body.eventTime)} as MicroTime ` +
          '(RFC 3339 with six fractional digits)',
      };
    }
    const problems = eventProblems(namespace, body);
    if (problems.length > 0) return { status: 422, message: `Event.events.k8s.io is invalid: ${problems.join(', ')}` };
    const name = text(metadata.name);
    const key = keyOf(namespace, name);
    if (this.events.has(key)) return { status: 409, message: `events.events.k8s.io "${name}" already exists` };
    const event: StoredEvent = { namespace, name, body: structuredClone(body), createdAt: Date.now() };
    this.events.set(key, event);
    return { status: 201, event };
  }

  list(): StoredEvent[] {
    return [...this.events.values()].map((e) => structuredClone(e));
  }

  /** Forgets an Event, as the API server does when its time to live is over. */
  expire(namespace: string, name: string): boolean {
    return this.events.delete(keyOf(namespace, name));
  }
}
