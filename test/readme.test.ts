import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { SETTINGS } from '../src/core/config.js';

// The README is the user's manual: it must say what the code does.
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const routeTableSource = readFileSync(new URL('../src/core/route-table.ts', import.meta.url), 'utf8');

describe('README', () => {
  it('lists every setting with its flag and default in the settings table', () => {
    for (const s of SETTINGS) {
      const row = readme.split('\n').find((line) => line.startsWith(`| \`${s.env}\` |`));
      assert.ok(row, `README settings table has a row for ${s.env}`);
      assert.ok(row.includes(`\`${s.flag}\``), `${s.env} row names ${s.flag}`);
      assert.ok(row.includes(`| \`${s.default}\` |`), `${s.env} row gives the default ${s.default}`);
    }
  });

  it('explains every rejection code the route table can give', () => {
    const union = /export type RejectionCode =([^;]+);/.exec(routeTableSource)?.[1] ?? '';
    const codes = [...union.matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]);
    assert.ok(codes.length >= 10);
    for (const code of codes) assert.match(readme, new RegExp(`^\\| \`${code}\` \\|`, 'm'), `README explains ${code}`);
  });

  it('shows a newcomer exactly two commands, each doing its own set-up', () => {
    const quickStart = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('## Routing pods'));
    const commands = [...quickStart.matchAll(/```sh\n([^\n]+)\n```/g)].map((m) => m[1]);
    assert.deepEqual(commands, ['npm start', 'npm test']);
    // Each installs and builds what it needs first, and `npm start` is the demo.
    const { scripts } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> };
    assert.match(scripts.prestart ?? '', /^node scripts\/setup\.mjs$/);
    assert.match(scripts.pretest ?? '', /^node scripts\/setup\.mjs && /);
    assert.match(scripts.start ?? '', / demo$/);
    assert.ok(existsSync(new URL('../examples/demo/demo.yaml', import.meta.url)));
  });

  it('lists every metric the admin server registers', () => {
    const metricsSource = readFileSync(new URL('../src/admin/metrics.ts', import.meta.url), 'utf8');
    const names = [...metricsSource.matchAll(/'(k8s_router_[a-z_]+)'/g)].map((m) => m[1]);
    assert.ok(names.length >= 25);
    for (const name of names) assert.match(readme, new RegExp(`^\\| \`${name}\` \\| (counter|gauge) \\|`, 'm'), `README lists ${name}`);
  });

  it('names only example files that exist', () => {
    for (const [, file] of readme.matchAll(/((?:examples|scripts)\/[\w./-]+[\w-])/g)) {
      assert.ok(existsSync(new URL(`../${file}`, import.meta.url)), `${file} exists`);
    }
  });
});

describe('CI', () => {
  it('runs the README test command after installing nginx', () => {
    const ci = readFileSync(new URL('../.ci/run', import.meta.url), 'utf8');
    assert.match(ci, /apt-get install -y[^\n]* nginx/);
    assert.match(ci, /^npm ci && npm test$/m);
  });
});
