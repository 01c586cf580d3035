import { parseAllDocuments } from 'yaml';
import type { Pod, Secret } from './kube-objects.js';
import { objectKey } from './kube-objects.js';

// A manifest is what `kubectl get pods,secrets -A -o yaml` prints (a v1 List), a
// PodList or SecretList, a single object, or a multi-document YAML file; JSON is YAML
// too. Kinds other than Pod and Secret are skipped, so a whole namespace dump works.

export interface ManifestObjects {
  pods: Pod[];
  secrets: Secret[];
}

export class ManifestError extends Error {
  readonly code = 'KR_BAD_MANIFEST';
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`manifest ${file}: ${problem}`);
    this.name = 'ManifestError';
  }
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
  for (const [key, value] of Object.entries(stringData)) data[key] = Buffer.from(String(value), 'utf8').toString('base64');
  return { ...rest, data };
}

/** Pods and Secrets from the text of a manifest file; `file` only names it in errors. */
export function parseManifest(text: string, file: string): ManifestObjects {
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
    const namespace = typeof metadata.namespace === 'string' && metadata.namespace !== '' ? metadata.namespace : 'default';
    const object = { ...item, kind, metadata: { ...metadata, namespace } };
    const key = `${kind} ${objectKey(object as Pod)}`;
    if (seen.has(key)) throw new ManifestError(file, `${where}: ${kind} ${namespace}/${metadata.name} appears twice`);
    seen.add(key);
    if (kind === 'Pod') pods.push(object as Pod);
    else secrets.push(normalizeSecret(object as Secret));
  };

  const documents = parseAllDocuments(text, { prettyErrors: true });
  if (!Array.isArray(documents)) {
    // parseAllDocuments returns an empty-stream marker for a file with nothing in it.
    return { pods, secrets };
  }
  documents.forEach((doc, i) => {
    const where = documents.length > 1 ? `document ${i + 1}` : 'the document';
    const error = doc.errors[0];
    if (error !== undefined) throw new ManifestError(file, `${where}: ${error.message.split('\n')[0]}`);
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return; // an empty document, e.g. after a trailing "---"
    add(value, where);
  });
  return { pods, secrets };
}
