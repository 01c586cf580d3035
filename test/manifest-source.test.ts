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

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'k8s-router-manifest-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('manifest source', () => {
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
    await assert.rejects(
      source.start(() => {}),
      /absent\.yaml: cannot be read: no such file/,
    );
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

describe('manifest source: broken, unreadable and rewritten files', () => {
  it('keeps the objects an edit left alone as the very same objects, in file order', async () => {
    const file = join(dir, 'identity.yaml');
    const pods = (names: string[], ip = (n: string) => `10.0.0.${n.length}`) =>
      names
        .map((n) => `kind: Pod\nmetadata: {name: ${n}, namespace: demo}\nstatus: {podIP: "${ip(n)}"}\n`)
        .join('---\n');
    const names = Array.from({ length: 600 }, (_, i) => `p${i}`);
    await writeFile(file, pods(names));
    const source = createManifestSource({ file, settleMs: 20 });
    const seen = changes();
    await source.start(seen.onChange);
    try {
      const before = source.snapshot().pods;
      assert.equal(before.length, 600);

      await writeFile(
        file,
        pods(names, (n) => (n === 'p7' ? '10.9.9.9' : `10.0.0.${n.length}`)),
      );
      await seen.next();
      const after = source.snapshot().pods;
      assert.equal(after[7]?.status?.podIP, '10.9.9.9');
      assert.notEqual(after[7], before[7]);
      assert.equal(after.filter((p, i) => p === before[i]).length, 599, 'every other pod is the same object');

      await writeFile(file, pods(['p599', 'new', ...names.slice(1, 599)]));
      await seen.next();
      const reordered = source.snapshot().pods;
      assert.deepEqual(
        reordered.slice(0, 3).map((p) => p.metadata?.name),
        ['p599', 'new', 'p1'],
      );
      assert.equal(reordered.length, 600);
      assert.equal(reordered[0], after[599]);
      assert.ok(!reordered.some((p) => p.metadata?.name === 'p0'), 'a pod taken out is gone');
    } finally {
      await source.stop();
    }
  });

  it('tells apart values JSON cannot (a port of .nan, then null)', async () => {
    const file = join(dir, 'numbers.yaml');
    const pod = (port: string) =>
      `kind: Pod\nmetadata: {name: p, namespace: demo}\nspec: {containers: [{ports: [{containerPort: ${port}}]}]}\n`;
    await writeFile(file, pod('.nan'));
    const source = createManifestSource({ file, settleMs: 20 });
    const seen = changes();
    await source.start(seen.onChange);
    try {
      assert.ok(Number.isNaN(source.snapshot().pods[0]?.spec?.containers?.[0]?.ports?.[0]?.containerPort));
      await writeFile(file, pod('null'));
      await seen.next();
      assert.equal(source.snapshot().pods[0]?.spec?.containers?.[0]?.ports?.[0]?.containerPort, null);
    } finally {
      await source.stop();
    }
  });
});
