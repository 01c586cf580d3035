import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { manifestText } from './support/manifests.js';
import { pod } from './support/objects.js';

// `k8s-router ... | head -1`: the reader closes the pipe early, and the CLI stops writing
// and ends as it would have, with status 0 and nothing on standard error, as Unix tools do
// (Node ignores SIGPIPE, so without care the write fails with EPIPE and a stack trace).
// These run the built CLI (npm run build) with its standard output on a pipe whose
// reading end is closed, either before the CLI writes or after its first line.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist/src/cli.js');

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** What the reader got before it closed the pipe. */
  read: string;
}

/** Runs the built CLI; its output pipe is closed at once, or once `readFirstLine` has read a line. */
function runClosingEarly(args: string[], readFirstLine: boolean): Promise<Ended> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let read = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    if (readFirstLine) {
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        read += chunk;
        if (read.includes('\n')) child.stdout.destroy();
      });
    } else {
      child.stdout.destroy();
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr, read });
    });
  });
}

let dir: string;
let bigManifest: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'k8s-router-closed-output-'));
  bigManifest = join(dir, 'pods.yaml');
  // A config far larger than a pipe's buffer (64 KiB): the writes go on after the reader left.
  const pods = Array.from({ length: 2000 }, (_, i) =>
    pod(`web-${i}`, {
      namespace: 'shop',
      ip: `10.0.${Math.floor(i / 250)}.${(i % 250) + 1}`,
      hosts: `h${i}.example.com`,
      paths: '80:/ 3000:/api',
    }),
  );
  await writeFile(bigManifest, manifestText(pods));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the CLI on a closed standard output', () => {
  const commands: Array<[string, () => string[]]> = [
    ['demo --help', () => ['demo', '--help']],
    ['run --help', () => ['run', '--help']],
    ['--version', () => ['--version']],
    ['render of 2,000 pods', () => ['render', '--manifest', bigManifest]],
    ['routes of 2,000 pods', () => ['routes', '--manifest', bigManifest]],
  ];
  for (const [name, args] of commands) {
    it(`${name}: closed before the first write, ends with status 0 and says nothing`, async () => {
      const ended = await runClosingEarly(args(), false);
      assert.deepEqual(
        { code: ended.code, signal: ended.signal, stderr: ended.stderr },
        { code: 0, signal: null, stderr: '' },
        `(run npm run build first)`,
      );
    });
  }

  for (const [name, args] of commands.filter(([n]) => n.includes('2,000') || n === 'demo --help')) {
    it(`${name}: closed after the first line (as head -1 does), ends with status 0 and says nothing`, async () => {
      const ended = await runClosingEarly(args(), true);
      assert.ok(ended.read.length > 0, 'the reader got the first line');
      assert.deepEqual(
        { code: ended.code, signal: ended.signal, stderr: ended.stderr },
        { code: 0, signal: null, stderr: '' },
      );
    });
  }

  it('still fails as before when something else goes wrong: status 1 and one line for a missing manifest', async () => {
    const ended = await runClosingEarly(['render', '--manifest', join(dir, 'missing.yaml')], false);
    assert.equal(ended.code, 1);
    assert.match(
      ended.stderr,
      /^k8s-router: manifest .*missing\.yaml: cannot be read: no such file \[KR_BAD_MANIFEST\]\n$/,
    );
  });
});
