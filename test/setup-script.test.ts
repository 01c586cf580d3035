import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

// scripts/setup.mjs, which `npm start` and `npm test` run first: what it decides to do
// for a checkout in each state (asked with --check, so nothing is installed here).

const SCRIPT = fileURLToPath(new URL('../scripts/setup.mjs', import.meta.url));

function check(root: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [SCRIPT, '--check', '--root', root], (err: Error | null, stdout: string) =>
      err ? reject(err) : resolve(stdout),
    );
  });
}

async function touch(root: string, file: string, secondsAgo: number): Promise<void> {
  const path = join(root, file);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, '');
  const when = new Date(Date.now() - secondsAgo * 1000);
  await utimes(path, when, when);
}

describe('scripts/setup.mjs', () => {
  let root: string;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'k8s-router-setup-'));
    await touch(root, 'package.json', 100);
    await touch(root, 'package-lock.json', 100);
    await touch(root, 'src/cli.ts', 100);
  });

  after(() => rm(root, { recursive: true, force: true }));

  it('on a fresh clone: installs (which builds too), and builds if that did not', async () => {
    assert.equal(await check(root), 'install: node_modules is missing\nbuild: dist/ is missing\n');
  });

  it('after an install and a build: nothing', async () => {
    await touch(root, 'node_modules/.package-lock.json', 50);
    await touch(root, 'dist/src/cli.js', 50);
    assert.equal(await check(root), 'install: no\nbuild: no\n');
  });

  it('after a pull that changed the lock file: installs again', async () => {
    await touch(root, 'package-lock.json', 10);
    assert.equal(await check(root), 'install: package-lock.json is newer than node_modules\nbuild: no\n');
    await touch(root, 'node_modules/.package-lock.json', 5);
  });

  it('after an edit of a source file, in any source folder: builds again', async () => {
    await touch(root, 'proxy/server.ts', 1);
    assert.equal(await check(root), 'install: no\nbuild: the sources are newer than dist/\n');
  });
});
