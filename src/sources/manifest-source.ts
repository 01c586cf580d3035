import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Pod, Secret } from '../core/kube-objects.js';
import { ManifestReader } from './manifest-reader.js';
import type { ObjectSource } from './source.js';
import { CodedError } from '../core/error-codes.js';

// A manifest file as a source of Pods and Secrets, followed as it is edited. Editors and
// `kubectl ... > file` replace or truncate the file, so we watch its directory and re-read
// the file on any event that names it. A file that stops parsing keeps the last good
// objects serving, as an API server outage would. The file is read and parsed in a
// worker thread (manifest-reader.ts): the objects an edit left alone stay the same
// objects, and the event loop never parses a big file.

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

export function createManifestSource(options: ManifestSourceOptions): ManifestSource {
  const file = resolve(options.file);
  const settleMs = options.settleMs ?? 50;
  const reader = new ManifestReader();
  let lastError: string | null = null;
  let watcher: FSWatcher | null = null;
  let timer: NodeJS.Timeout | null = null;
  let reading: Promise<void> = Promise.resolve();
  let stopped = false;

  const reload = async (onChange: () => void): Promise<void> => {
    try {
      const result = await reader.read(file, file);
      if (stopped) return;
      if (result.kind === 'error') throw new Error(result.message);
      if (lastError !== null) options.logger?.info({ file }, 'manifest readable again');
      lastError = null;
      if (result.kind === 'objects' && result.changed) onChange();
    } catch (err) {
      if (stopped) return;
      const message = (err as Error).message;
      if (message !== lastError) {
        options.logger?.error({ file, err: message }, 'manifest unusable, still serving its last good objects');
      }
      lastError = message;
    }
  };

  return {
    async start(onChange) {
      const first = await reader
        .read(file, options.file)
        .catch((err: Error) => ({ kind: 'error' as const, message: err.message }));
      if (first.kind === 'error') {
        await reader.close();
        // The worker's message names the file and the problem: the one line the CLI prints.
        throw new CodedError('KR_BAD_MANIFEST', first.message);
      }
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
      const { pods, secrets } = reader.current();
      return { pods: pods.slice(), secrets: secrets.slice() };
    },
    async stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      watcher?.close();
      await reading;
      await reader.close();
    },
    lastError: () => lastError,
  };
}
