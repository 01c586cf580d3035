import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

// The router forwards through http-proxy 1.18.1, which calls util._extend: Node 22 and
// later print a DEP0060 DeprecationWarning for it. Users of the router must not see it,
// and nothing else may be hidden with it. Each scenario runs in its own process, since
// Node prints each deprecation code once per process.

const CHILD = fileURLToPath(new URL('./support/deprecation-child.ts', import.meta.url));

function run(scenario: string): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', CHILD, scenario], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${scenario}: ${err.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

test('http-proxy on its own makes Node print DEP0060 (what the router must hide)', async () => {
  const { stdout, stderr } = await run('bare');
  assert.equal(stdout, 'done\n');
  assert.match(stderr, /\[DEP0060\] DeprecationWarning: The `util._extend` API is deprecated/);
});

test('proxying through the router prints no DEP0060', async () => {
  const { stdout, stderr } = await run('router');
  assert.equal(stdout, 'done\n');
  assert.doesNotMatch(stderr, /DEP0060/);
});

test('other deprecation warnings still reach the user', async () => {
  const { stderr } = await run('other-warning');
  assert.doesNotMatch(stderr, /DEP0060/);
  assert.match(stderr, /\[DEP0999\] DeprecationWarning: something else is deprecated/);
});

test('DEP0060 raised by other code is still printed', async () => {
  const { stderr } = await run('extend-elsewhere-first');
  assert.match(stderr, /\[DEP0060\] DeprecationWarning/);
});
