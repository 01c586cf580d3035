import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DEMO_DEFAULTS } from '../src/commands/demo.js';
import { SETTINGS } from '../src/core/config.js';
import { runCli } from './support/run-cli.js';

const golden = (name: string): string => readFileSync(new URL(`golden/${name}`, import.meta.url), 'utf8');
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
  bin: Record<string, string>;
};

describe('k8s-router CLI', () => {
  it('render prints the documented config for the seed demo', async () => {
    const result = await runCli(['render', '--manifest', 'examples/seed-demo-three-pods.yaml']);
    assert.equal(result.stderr, '');
    assert.equal(result.code, 0);
    assert.equal(result.stdout, golden('three-pods.conf'));
  });

  it('render applies PORT from the environment, and a flag overrides it', async () => {
    const fromEnv = await runCli(['render', '--manifest', 'examples/seed-empty.yaml'], { PORT: '8080' });
    assert.match(fromEnv.stdout, /^listen 8080 default_server;$/m);
    const fromFlag = await runCli(['render', '--manifest', 'examples/seed-empty.yaml', '--port', '9090'], {
      PORT: '8080',
    });
    assert.match(fromFlag.stdout, /^listen 9090 default_server;$/m);
  });

  it('routes prints routes and rejections as JSON, with API keys redacted', async () => {
    const result = await runCli(['routes', '--manifest', 'examples/demo/demo.yaml']);
    assert.equal(result.code, 0, result.stderr);
    const table = JSON.parse(result.stdout) as {
      routes: Array<{ apiKey: string | null }>;
      rejections: Array<Record<string, string>>;
    };
    assert.ok(table.routes.length > 0);
    assert.ok(table.routes.some((r) => r.apiKey === '<redacted>'));
    assert.ok(
      !result.stdout.includes(Buffer.from('demo-secret').toString('base64')),
      'the demo API key is not printed',
    );
    assert.ok(table.rejections.length > 0);
    for (const r of table.rejections)
      assert.deepEqual(Object.keys(r), ['namespace', 'pod', 'field', 'value', 'code', 'reason']);
  });
});

describe('k8s-router CLI: bad settings, options and manifests', () => {
  it('stops with status 2 and one line naming the variable, the value and the problem', async () => {
    const result = await runCli(['render', '--manifest', 'examples/seed-empty.yaml'], { PORT: '99999' });
    assert.equal(result.code, 2);
    assert.equal(result.stdout, '');
    assert.equal(
      result.stderr,
      'k8s-router: invalid PORT="99999": out of range: must be an integer from 1 to 65535 [KR_INVALID_PORT]\n',
    );
  });

  it('names the flag when a flag carried the bad value', async () => {
    const result = await runCli(['routes', '--manifest', 'examples/seed-empty.yaml', '--label-selector', 'a in (b']);
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      new RegExp(
        String.raw`^k8s-router: invalid --label-selector="a in \(b": not a label selector: .* ` +
          String.raw`\[KR_INVALID_ROUTABLE_LABEL_SELECTOR\]\n$`,
      ),
    );
  });

  it('checks the settings before reading the manifest', async () => {
    const result = await runCli(['render', '--manifest', 'does-not-exist.yaml'], {
      API_KEY_SECRET_LOCATION: 'routing',
    });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /API_KEY_SECRET_LOCATION/);
  });

  it('exits 2 on an unknown option or command', async () => {
    assert.equal((await runCli(['render', '--manifest', 'examples/seed-empty.yaml', '--prot', '80'])).code, 2);
    assert.equal((await runCli(['rendr'])).code, 2);
    assert.equal((await runCli(['render'])).code, 2, '--manifest is required');
  });

  it('exits 1 naming the file when the manifest cannot be read or parsed', async () => {
    const missing = await runCli(['render', '--manifest', 'does-not-exist.yaml']);
    assert.equal(missing.code, 1);
    assert.equal(
      missing.stderr,
      'k8s-router: manifest does-not-exist.yaml: cannot be read: no such file [KR_BAD_MANIFEST]\n',
    );
    const broken = await runCli(['render', '--manifest', 'package.json']);
    assert.equal(broken.code, 1);
    assert.match(
      broken.stderr,
      /^k8s-router: manifest package\.json: the document has no "kind" \[KR_BAD_MANIFEST\]\n$/,
    );
  });

  it('run: exits 1 with one line naming the file when the manifest cannot be read at start', async () => {
    const missing = await runCli([
      'run',
      '--manifest',
      'does-not-exist.yaml',
      '--admin-port',
      'off',
      '--log-level',
      'silent',
    ]);
    assert.equal(missing.code, 1, missing.stderr);
    assert.equal(
      missing.stderr,
      'k8s-router: manifest does-not-exist.yaml: cannot be read: no such file [KR_BAD_MANIFEST]\n',
    );
  });
});

describe('k8s-router CLI: help, version and the built binary', () => {
  it('documents every setting, with its variable and default, in --help of each command that uses it', async () => {
    for (const command of ['render', 'routes', 'run', 'demo']) {
      const help = await runCli([command, '--help']);
      assert.equal(help.code, 0);
      const defaults: Record<string, string> = command === 'demo' ? DEMO_DEFAULTS : {};
      for (const s of SETTINGS.filter(
        (setting) => setting.scope === 'all' || command === 'run' || command === 'demo',
      )) {
        assert.ok(help.stdout.includes(s.flag), `${command} --help lists ${s.flag}`);
        const value = defaults[s.env] ?? s.default;
        assert.ok(
          help.stdout.includes(`env ${s.env}, default "${value}"`),
          `${command} --help gives ${s.env} and its default ${value}`,
        );
      }
    }
  });

  it('prints its version', async () => {
    const result = await runCli(['--version']);
    assert.equal(result.code, 0);
    assert.equal(result.stdout, `${pkg.version}\n`);
  });

  it('runs as the built binary that npm ci prepares', async () => {
    const result = await runCli(['render', '--manifest', 'examples/seed-demo-one-pod.yaml'], {}, [
      pkg.bin['k8s-router'] as string,
    ]);
    assert.equal(result.code, 0, `${result.stderr} (run npm run build first)`);
    assert.equal(result.stdout, golden('one-pod.conf'));
  });
});
