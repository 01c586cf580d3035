import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createManifestSource, type ManifestSource } from '../src/sources/manifest-source.js';
import { eventually } from './support/eventually.js';

const podYaml = (name: string): string => `kind: Pod\nmetadata: {name: ${name}, namespace: demo}\n`;
const podNames = (source: ManifestSource): string[] => source.snapshot().pods.map((p) => p.metadata?.name ?? '');

/** Resolves at the next onChange, or fails after a bound so a missing event cannot hang the suite. */
function changes(): { onChange: () => void; next: () => Promise<void> } {
  let waiting: (() => void) | null = null;
  let pending = 0;
  return {
    onChange: () => {
      if (waiting) {
        const w = waiting;
        waiting = null;
        w();
      } else pending++;
    },
    next: () =>
      new Promise<void>((resolve, reject) => {
        if (pending > 0) {
          pending--;
          resolve();
          return;
        }
        const timer = setTimeout(() => reject(new Error('no change seen within 5 s')), 5000);
        waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      }),
  };
}

describe('manifest source', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'k8s-router-manifest-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads the file, then follows edits in place and replacements by rename', async () => {
    const file = join(dir, 'follow.yaml');
    await writeFile(file, podYaml('first'));
    const source = createManifestSource({ file, settleMs: 20 });
    const seen = changes();
    await source.start(seen.onChange);
    try {
      assert.deepEqual(podNames(source), ['first']);

      await writeFile(file, podYaml('second'));
      await seen.next();
      assert.deepEqual(podNames(source), ['second']);

      const replacement = join(dir, 'follow.yaml.tmp');
      await writeFile(replacement, `${podYaml('third')}---\n${podYaml('fourth')}`);
      await rename(replacement, file);
      await seen.next();
      assert.deepEqual(podNames(source), ['third', 'fourth']);
    } finally {
      await source.stop();
    }
  });

  it('keeps the last good objects while the file is broken or missing, and says why', async () => {
    const file = join(dir, 'broken.yaml');
    await writeFile(file, podYaml('good'));
    const source = createManifestSource({ file, settleMs: 20 });
    const seen = changes();
    await source.start(seen.onChange);
    try {
      await writeFile(file, 'kind: Pod\nmetadata: {name: [broken\n');
      await eventually(() => source.lastError() !== null, 'the broken file to be reported');
      assert.match(source.lastError() ?? '', /^manifest .*broken\.yaml: /);
      assert.deepEqual(podNames(source), ['good']);

      await unlink(file);
      await eventually(() => /no such file/.test(source.lastError() ?? ''), 'the missing file to be reported');
      assert.deepEqual(podNames(source), ['good']);

      await writeFile(file, podYaml('back'));
      await seen.next();
      assert.equal(source.lastError(), null);
      assert.deepEqual(podNames(source), ['back']);
    } finally {
      await source.stop();
    }
  });

  it('fails to start, naming the file, when it cannot be read at all', async () => {
    const source = createManifestSource({ file: join(dir, 'absent.yaml') });
    await assert.rejects(source.start(() => {}), /absent\.yaml: cannot be read: no such file/);
  });

  it('does not report a change when the file is rewritten with the same text', async () => {
    const file = join(dir, 'same.yaml');
    await writeFile(file, podYaml('same'));
    let calls = 0;
    const source = createManifestSource({ file, settleMs: 20 });
    await source.start(() => calls++);
    try {
      await writeFile(file, podYaml('same'));
      await writeFile(join(dir, 'unrelated.yaml'), podYaml('other'));
      await new Promise((r) => setTimeout(r, 200)); // several settle windows: time to (wrongly) report
      assert.equal(calls, 0);
      await writeFile(file, podYaml('changed'));
      await eventually(() => calls > 0, 'the change to be reported');
      assert.equal(calls, 1);
      assert.deepEqual(podNames(source), ['changed']);
    } finally {
      await source.stop();
    }
  });
});
