import { Worker } from 'node:worker_threads';
import type { Pod, Secret } from '../core/kube-objects.js';

// Reads a manifest file in a worker thread (manifest-worker.ts) and keeps its objects: an
// object the file still holds unchanged stays the very same object from one read to the
// next (the route table recognises it by identity and does nothing for it), and only the
// objects that changed cross from the worker, in batches decoded one per turn of the
// event loop. A changed manifest of 10,000 pods therefore never holds the loop the
// in-process proxy serves from for long: measured by bench/control-plane.ts.

export type ReaderRequest = { kind: 'read'; file: string; label: string } | { kind: 'ack' };

export type ReaderReply =
  | { kind: 'same' }
  | { kind: 'error'; message: string }
  | { kind: 'objects'; objects: Array<{ key: string; object: unknown }> }
  | { kind: 'done'; full: boolean; removed: string[]; podOrder: string[] | null; secretOrder: string[] | null };

/** What a read found: the text as last time, a problem (the message names the file), or the objects now. */
export type ReadResult = { kind: 'same' } | { kind: 'error'; message: string } | { kind: 'objects'; changed: boolean };

/** Objects of one kind in file order, with where each key is. */
class Ordered<T> {
  list: T[] = [];
  private at = new Map<string, number>();

  reorder(keys: readonly string[], objects: ReadonlyMap<string, unknown>): void {
    this.list = keys.map((key) => objects.get(key) as T);
    this.at = new Map(keys.map((key, i) => [key, i]));
  }

  /** Puts a changed object where its key is; false when the key is not here. */
  replace(key: string, object: T): boolean {
    const i = this.at.get(key);
    if (i === undefined) return false;
    this.list[i] = object;
    return true;
  }
}

/**
 * The worker thread. Run from TypeScript under tsx (the tests), the worker is TypeScript
 * too, and tsx's loader does not reach worker threads by itself: the thread registers it
 * first. Built (dist/), the worker is plain JavaScript.
 */
function startWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./manifest-worker.js', import.meta.url));
  const entry = JSON.stringify(new URL('./manifest-worker.ts', import.meta.url).href);
  return new Worker(`import('tsx/esm/api').then((tsx) => tsx.register()).then(() => import(${entry}))`, { eval: true });
}

export class ManifestReader {
  private worker: Worker | null = null;
  private pending: { resolve: (result: ReadResult) => void; reject: (err: Error) => void } | null = null;
  private incoming: Array<{ key: string; object: unknown }> = [];
  private readonly objects = new Map<string, unknown>();
  private readonly pods = new Ordered<Pod>();
  private readonly secrets = new Ordered<Secret>();
  private closed = false;

  /** The objects of the last good read. */
  current(): { pods: Pod[]; secrets: Secret[] } {
    return { pods: this.pods.list, secrets: this.secrets.list };
  }

  /** Reads `file` (named `label` in messages); one read at a time. */
  read(file: string, label: string): Promise<ReadResult> {
    if (this.closed) return Promise.reject(new Error('the manifest reader is closed'));
    if (this.pending !== null) return Promise.reject(new Error('a manifest read is already in progress'));
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.incoming = [];
      this.thread().postMessage({ kind: 'read', file, label } satisfies ReaderRequest);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = null;
    this.settle(new Error('the manifest reader is closed'));
    await worker?.terminate();
  }

  private thread(): Worker {
    if (this.worker !== null) return this.worker;
    const worker = startWorker();
    // A reader waiting for a file change must not keep the process alive.
    worker.unref();
    worker.on('message', (reply: ReaderReply) => this.onReply(reply));
    worker.on('error', (err) => {
      // A new thread next time, knowing nothing: it sends every object again.
      this.worker = null;
      this.settle(err);
    });
    worker.on('exit', () => {
      if (this.worker === worker) this.worker = null;
      this.settle(new Error('the manifest reader thread ended'));
    });
    this.worker = worker;
    return worker;
  }

  private settle(outcome: ReadResult | Error): void {
    const pending = this.pending;
    this.pending = null;
    this.incoming = [];
    if (pending === null) return;
    if (outcome instanceof Error) pending.reject(outcome);
    else pending.resolve(outcome);
  }

  private onReply(reply: ReaderReply): void {
    switch (reply.kind) {
      case 'same':
      case 'error':
        return this.settle(reply);
      case 'objects':
        // Each batch is decoded in a turn of its own: ask for the next one only now.
        this.incoming.push(...reply.objects);
        this.worker?.postMessage({ kind: 'ack' } satisfies ReaderRequest);
        return;
      case 'done':
        return this.settle({ kind: 'objects', changed: this.apply(reply) });
    }
  }

  /** Applies what changed; whether anything did. */
  private apply(done: Extract<ReaderReply, { kind: 'done' }>): boolean {
    const changed = this.incoming;
    if (done.full) this.objects.clear();
    for (const { key, object } of changed) this.objects.set(key, object);
    for (const key of done.removed) this.objects.delete(key);
    const place = <T>(ordered: Ordered<T>, order: string[] | null, prefix: string): void => {
      if (order !== null) return ordered.reorder(order, this.objects);
      for (const { key, object } of changed) if (key.startsWith(prefix)) ordered.replace(key, object as T);
    };
    // A full read (a new thread) always comes with its order.
    place(this.pods, done.podOrder, 'Pod ');
    place(this.secrets, done.secretOrder, 'Secret ');
    return (
      done.full || changed.length > 0 || done.removed.length > 0 || done.podOrder !== null || done.secretOrder !== null
    );
  }
}
