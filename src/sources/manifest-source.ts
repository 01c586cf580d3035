import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Pod, Secret } from '../core/kube-objects.js';
import { ManifestError, parseManifest, type ManifestObjects } from '../core/manifest.js';
import type { ObjectSource } from './source.js';

// A manifest file as a source of Pods and Secrets, followed as it is edited. Editors and
// `kubectl ... > file` replace or truncate the file, so we watch its directory and re-read
// the file on any event that names it. A file that stops parsing keeps the last good
// objects serving, as an API server outage would.

export interface ManifestSourceOptions {
  file: string;
  logger?: Logger;
  /** Events within this window are read once; editors write in several steps. */
  settleMs?: number;
}

export interface ManifestSource extends ObjectSource {
  /** The last problem reading the file, or null when the last read succeeded. */
  lastError(): string | null;
}

async function readObjects(file: string): Promise<{ text: string; objects: ManifestObjects }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ManifestError(file, `cannot be read: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  return { text, objects: parseManifest(text, file) };
}

export function createManifestSource(options: ManifestSourceOptions): ManifestSource {
  const file = resolve(options.file);
  const settleMs = options.settleMs ?? 50;
  let objects: ManifestObjects = { pods: [], secrets: [] };
  let lastText: string | null = null;
  let lastError: string | null = null;
  let watcher: FSWatcher | null = null;
  let timer: NodeJS.Timeout | null = null;
  let reading: Promise<void> = Promise.resolve();
  let stopped = false;

  const reload = async (onChange: () => void): Promise<void> => {
    try {
      const next = await readObjects(file);
      if (stopped) return;
      if (lastError !== null) options.logger?.info({ file }, 'manifest readable again');
      lastError = null;
      if (next.text === lastText) return;
      lastText = next.text;
      objects = next.objects;
      onChange();
    } catch (err) {
      if (stopped) return;
      const message = err instanceof ManifestError ? err.message : String(err);
      if (message !== lastError) {
        options.logger?.error({ file, err: message }, 'manifest unusable, still serving its last good objects');
      }
      lastError = message;
    }
  };

  return {
    async start(onChange) {
      const first = await readObjects(options.file);
      objects = first.objects;
      lastText = first.text;
      const name = basename(file);
      watcher = watch(dirname(file), (_event, changed) => {
        if (stopped || (changed !== null && changed !== name)) return;
        if (timer !== null) clearTimeout(timer);
        timer = setTimeout(() => {
          timer = null;
          reading = reading.then(() => reload(onChange));
        }, settleMs);
      });
      watcher.on('error', (err) => options.logger?.error({ file, err: err.message }, 'cannot watch the manifest'));
    },
    snapshot(): { pods: Pod[]; secrets: Secret[] } {
      return { pods: [...objects.pods], secrets: [...objects.secrets] };
    },
    async stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      watcher?.close();
      await reading;
    },
    lastError: () => lastError,
  };
}
