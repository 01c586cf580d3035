import assert from 'node:assert/strict';
import { chmod, chown, lstat, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { unsafeDirectoryProblem, writeFileAtomic, writeSynced } from '../nginx/files.js';
import { runCli } from './support/run-cli.js';

// nginx.conf holds every tenant's API key: only the router's user may read it, and it is
// only written into a directory no one else controls.

describe('files that hold API keys', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'k8s-router-files-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes nginx.conf readable and writable by its owner only, replacing the old file', async () => {
    const conf = join(dir, 'nginx.conf');
    await writeFile(conf, 'old', { mode: 0o644 });
    await writeFileAtomic(conf, 'new text');
    assert.equal(await readFile(conf, 'utf8'), 'new text');
    assert.equal((await stat(conf)).mode & 0o777, 0o600);
  });

  it('does not write through a link planted where a file is about to be written', async () => {
    const victim = join(dir, 'victim');
    await writeFile(victim, 'untouched', { mode: 0o644 });
    const candidate = join(dir, 'nginx.conf.candidate');
    await symlink(victim, candidate);
    await writeSynced(candidate, 'new text');
    assert.equal(await readFile(victim, 'utf8'), 'untouched');
    assert.equal((await lstat(candidate)).isFile(), true);
    assert.equal((await stat(candidate)).mode & 0o777, 0o600);
  });

  it('accepts a private directory and refuses one others can write to or that someone else owns', async () => {
    const own = join(dir, 'own');
    await mkdir(own, { mode: 0o755 });
    assert.equal(await unsafeDirectoryProblem(own), null);
    const shared = join(dir, 'shared');
    await mkdir(shared);
    await chmod(shared, 0o777);
    assert.match((await unsafeDirectoryProblem(shared)) ?? '', /writable by group or others \(mode 777\)/);
    if (process.getuid?.() === 0) {
      const foreign = join(dir, 'foreign');
      await mkdir(foreign, { mode: 0o755 });
      await chown(foreign, 65534, 65534);
      assert.match((await unsafeDirectoryProblem(foreign)) ?? '', /owned by uid 65534/);
    }
  });

  it('run refuses an nginx prefix others can write to, before starting anything', async () => {
    const shared = join(dir, 'prefix-shared');
    await mkdir(shared);
    await chmod(shared, 0o777);
    const result = await runCli([
      'run',
      '--backend',
      'nginx',
      '--manifest',
      'examples/seed-empty.yaml',
      '--port',
      '18999',
      '--nginx-prefix',
      shared,
    ]);
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      new RegExp(
        String.raw`^k8s-router: invalid NGINX_PREFIX=".*prefix-shared": ` +
          String.raw`the directory is writable by group or others \(mode 777\); ` +
          String.raw`it will hold API keys \[KR_INVALID_NGINX_PREFIX\]\n$`,
      ),
    );
  });
});
