import { parseAllDocuments } from 'yaml';
import { CodedError } from './error-codes.js';
import type { Pod, Secret } from './kube-objects.js';
import { objectKey } from './kube-objects.js';

// A manifest is what `kubectl get pods,secrets -A -o yaml` prints (a v1 List), a
// PodList or SecretList, a single object, or a multi-document YAML file; JSON is YAML
// too. Kinds other than Pod and Secret are skipped, so a whole namespace dump works.
//
// The meaning of a manifest is what the `yaml` package (YAML 1.2, core schema) makes of
// it, and its messages say what is wrong with a broken one. JSON, which is YAML too, is
// read with JSON.parse, many times faster; JSON that JSON.parse refuses is read again by
// `yaml`, so a broken file gets its message. (A manifest is parsed in a worker thread,
// src/sources/manifest-worker.ts, so even a slow parse of a big file never holds the
// event loop.)

export interface ManifestObjects {
  pods: Pod[];
  secrets: Secret[];
}

export class ManifestError extends CodedError {
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super('KR_BAD_MANIFEST', `manifest ${file}: ${problem}`);
    this.name = 'ManifestError';
  }
}

/** Why a manifest file cannot be read, as its error line says it. */
export function unreadableManifest(label: string, err: unknown): ManifestError {
  const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
  return new ManifestError(label, `cannot be read: ${reason}`);
}

const LIST_KINDS: Record<string, string | undefined> = { List: undefined, PodList: 'Pod', SecretList: 'Secret' };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * stringData is write-only in the API: the API server folds it into base64 data. Do
 * the same, so a hand-written Secret means what it would mean in a cluster.
 */
function normalizeSecret(secret: Secret & { stringData?: Record<string, unknown> }): Secret {
  const { stringData, ...rest } = secret;
  if (!isObject(stringData)) return rest;
  const data = { ...(rest.data ?? {}) };
  for (const [key, value] of Object.entries(stringData))
    data[key] = Buffer.from(String(value), 'utf8').toString('base64');
  return { ...rest, data };
}

/** The documents of a manifest in JSON (what `kubectl ... -o json` prints), or null when it is not JSON. */
function jsonDocuments(text: string): unknown[] | null {
  const start = /^\uFEFF?\s*/.exec(text)?.[0].length ?? 0;
  if (text[start] !== '{' && text[start] !== '[') return null;
  try {
    return [JSON.parse(text.slice(start)) as unknown];
  } catch {
    // Not JSON after all (a YAML flow mapping, say): read as YAML.
    return null;
  }
}

interface Documents {
  count: number;
  /** Read one by one: the first problem, syntax or content, is the one reported. */
  values: Iterable<unknown>;
}

/** The documents as the `yaml` package reads them, with its message for a broken one. */
function yamlDocuments(text: string, file: string): Documents {
  const documents = parseAllDocuments(text, { prettyErrors: true });
  // parseAllDocuments returns an empty-stream marker for a file with nothing in it.
  if (!Array.isArray(documents)) return { count: 0, values: [] };
  function* values(): Generator<unknown> {
    for (const [i, doc] of documents.entries()) {
      const error = doc.errors[0];
      if (error !== undefined)
        throw new ManifestError(file, `${whereIs(i, documents.length)}: ${error.message.split('\n')[0]}`);
      yield doc.toJS({ maxAliasCount: 100 });
    }
  }
  return { count: documents.length, values: values() };
}

function whereIs(index: number, count: number): string {
  return count > 1 ? `document ${index + 1}` : 'the document';
}

/** Pods and Secrets from the text of a manifest file; `file` only names it in errors. */
export function parseManifest(text: string, file: string): ManifestObjects {
  const json = jsonDocuments(text);
  if (json !== null) return manifestObjects({ count: json.length, values: json }, file);
  return manifestObjects(yamlDocuments(text, file), file);
}

function manifestObjects(documents: Documents, file: string): ManifestObjects {
  const pods: Pod[] = [];
  const secrets: Secret[] = [];
  const seen = new Set<string>();

  const add = (item: unknown, where: string, impliedKind?: string): void => {
    if (!isObject(item)) throw new ManifestError(file, `${where} is not an object`);
    const kind = typeof item.kind === 'string' ? item.kind : impliedKind;
    if (kind === undefined) throw new ManifestError(file, `${where} has no "kind"`);
    if (kind in LIST_KINDS) {
      if (!Array.isArray(item.items)) throw new ManifestError(file, `${where} is a ${kind} without an "items" list`);
      item.items.forEach((child, i) => add(child, `${where} item ${i + 1}`, LIST_KINDS[kind]));
      return;
    }
    if (kind !== 'Pod' && kind !== 'Secret') return;
    const metadata = item.metadata;
    if (!isObject(metadata) || typeof metadata.name !== 'string' || metadata.name === '') {
      throw new ManifestError(file, `${where} (${kind}) has no metadata.name`);
    }
    // Objects without a namespace live in "default", as kubectl would create them.
    const namespace =
      typeof metadata.namespace === 'string' && metadata.namespace !== '' ? metadata.namespace : 'default';
    const object = { ...item, kind, metadata: { ...metadata, namespace } };
    const key = `${kind} ${objectKey(object)}`;
    if (seen.has(key)) throw new ManifestError(file, `${where}: ${kind} ${namespace}/${metadata.name} appears twice`);
    seen.add(key);
    if (kind === 'Pod') pods.push(object as Pod);
    else secrets.push(normalizeSecret(object as Secret));
  };

  let i = 0;
  for (const value of documents.values) {
    // An empty document (after a trailing "---", say) holds nothing.
    if (value !== null && value !== undefined) add(value, whereIs(i, documents.count));
    i++;
  }
  return { pods, secrets };
}
