import { readFile } from 'node:fs/promises';
import { parentPort } from 'node:worker_threads';
import { objectKey } from '../core/kube-objects.js';
import { ManifestError, parseManifest, unreadableManifest } from '../core/manifest.js';
import type { ReaderReply, ReaderRequest } from './manifest-reader.js';

// The thread that reads and parses a manifest file for manifest-reader.ts, so that the
// event loop the in-process proxy serves from never parses 10,000 pods (about 50 ms as
// JSON, 450 ms as YAML). It keeps what it read last and hands back only the objects that
// changed since, a batch at a time: what crosses to the main thread (a structured clone,
// decoded there) is in proportion to the edit, and even a whole new file arrives in
// pieces the main thread takes between other work.

/** Objects per batch: decoding one on the main thread takes a few milliseconds. */
const BATCH = 250;

interface Known {
  text: string;
  /** A serialization of each object by kind and key, to tell which changed. */
  prints: Map<string, string>;
  podOrder: string[];
  secretOrder: string[];
}

let known: Known | null = null;
let acked: (() => void) | null = null;

/** JSON, with the numbers JSON cannot tell apart (NaN, ±Infinity, -0) kept apart. */
function fingerprint(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'number' && (!Number.isFinite(v) || Object.is(v, -0))
      ? `\u0000${Object.is(v, -0) ? '-0' : String(v)}`
      : v,
  );
}

function send(reply: ReaderReply): void {
  parentPort?.postMessage(reply);
}

/** Sends a batch and waits until the main thread has taken it in. */
function sendBatch(reply: ReaderReply): Promise<void> {
  return new Promise((resolve) => {
    acked = resolve;
    send(reply);
  });
}

async function read(request: Extract<ReaderRequest, { kind: 'read' }>): Promise<void> {
  let text: string;
  try {
    text = await readFile(request.file, 'utf8');
  } catch (err) {
    send({ kind: 'error', message: unreadableManifest(request.label, err).message });
    return;
  }
  if (known !== null && text === known.text) {
    send({ kind: 'same' });
    return;
  }
  let objects;
  try {
    objects = parseManifest(text, request.label);
  } catch (err) {
    send({ kind: 'error', message: err instanceof ManifestError ? err.message : String(err) });
    return;
  }
  const full = known === null;
  const prints = new Map<string, string>();
  const changed: Array<{ key: string; object: unknown }> = [];
  const order = (kind: string, list: readonly object[]): string[] =>
    list.map((object) => {
      const key = `${kind} ${objectKey(object)}`;
      const print = fingerprint(object);
      prints.set(key, print);
      if (full || known?.prints.get(key) !== print) changed.push({ key, object });
      return key;
    });
  const podOrder = order('Pod', objects.pods);
  const secretOrder = order('Secret', objects.secrets);
  const removed = full ? [] : [...(known as Known).prints.keys()].filter((key) => !prints.has(key));
  const same = (a: readonly string[], b: readonly string[] | undefined): boolean =>
    b !== undefined && a.length === b.length && a.every((k, i) => k === b[i]);
  for (let i = 0; i < changed.length; i += BATCH)
    await sendBatch({ kind: 'objects', objects: changed.slice(i, i + BATCH) });
  send({
    kind: 'done',
    full,
    removed,
    podOrder: same(podOrder, known?.podOrder) ? null : podOrder,
    secretOrder: same(secretOrder, known?.secretOrder) ? null : secretOrder,
  });
  known = { text, prints, podOrder, secretOrder };
}

let queue: Promise<void> = Promise.resolve();
parentPort?.on('message', (request: ReaderRequest) => {
  if (request.kind === 'ack') {
    const resolve = acked;
    acked = null;
    resolve?.();
    return;
  }
  queue = queue
    .then(() => read(request))
    .catch((err: unknown) => send({ kind: 'error', message: `reading the manifest failed: ${String(err)}` }));
});
