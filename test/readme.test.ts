import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { loadConfig, SETTINGS } from '../src/core/config.js';
import { ERROR_CODES } from '../src/core/error-codes.js';
import { parseManifest } from '../src/core/manifest.js';
import { DEMO_DEFAULTS, demoCommands, withDemoDefaults } from '../src/commands/demo.js';
import { demoPodSpecs } from '../src/commands/demo-pods.js';

// The README is the user's manual: it must say what the code does. Each check reads the
// fact from the code (or the file the README points at) and looks for it in the README.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');
const readme = read('README.md');
const lines = readme.split('\n');

/** The text of a `## ` section, up to the next one. */
function section(title: string): string {
  const start = readme.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `README has a "## ${title}" section`);
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as "-". */
function anchorOf(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
}

function anchors(): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fenced = false;
  for (const line of lines) {
    if (line.startsWith('```')) fenced = !fenced;
    const heading = fenced ? null : /^#{1,6} (.+)$/.exec(line);
    if (!heading) continue;
    const base = anchorOf(heading[1] as string);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

describe('README: settings and codes', () => {
  it('lists every setting with its flag and default in the settings table', () => {
    const table = section('Settings').split('\n');
    for (const s of SETTINGS) {
      const row = table.find((line) => line.startsWith(`| \`${s.env}\` |`));
      assert.ok(row, `README settings table has a row for ${s.env}`);
      assert.ok(row.includes(`\`${s.flag}\``), `${s.env} row names ${s.flag}`);
      assert.ok(row.includes(`| \`${s.default}\` |`), `${s.env} row gives the default ${s.default}`);
    }
  });

  it('says truly which settings render and routes read, and the demo defaults', () => {
    const text = section('Settings');
    const claim = /read the first (\d+) rows, down to `([A-Z_]+)`/.exec(text);
    assert.ok(claim, 'the Settings section says which rows render and routes read');
    const count = Number(claim[1]);
    const everyCommand = SETTINGS.filter((s) => s.scope === 'all').map((s) => s.env);
    assert.deepEqual(
      everyCommand,
      SETTINGS.slice(0, count).map((s) => s.env),
      'those settings come first in SETTINGS',
    );
    assert.equal(everyCommand.at(-1), claim[2]);
    const rows = text.split('\n').flatMap((line) => /^\| `([A-Z_]+)` \|/.exec(line)?.[1] ?? []);
    assert.deepEqual(rows.slice(0, count), everyCommand, `the first ${count} rows are those settings`);
    for (const [name, value] of Object.entries(DEMO_DEFAULTS))
      assert.ok(text.includes(`\`${name}=${value}\``), `README gives the demo default ${name}=${value}`);
  });

  it('explains every rejection code the route table can give', () => {
    const union = /export type RejectionCode =([^;]+);/.exec(read('src/core/route-table.ts'))?.[1] ?? '';
    const codes = [...union.matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]);
    assert.ok(codes.length >= 10);
    for (const code of codes) assert.match(readme, new RegExp(`^\\| \`${code}\` \\|`, 'm'), `README explains ${code}`);
  });

  it('lists every error code of the catalogue with its exit status and meaning, and no other', () => {
    const rows = lines.flatMap((line) => {
      const row = /^\| `(KR_[A-Z_<>]+)` \| ([0-9]|—) \| (.*) \|$/.exec(line);
      return row === null ? [] : [{ code: row[1] as string, exit: row[2] as string, when: row[3] as string }];
    });
    const commands = section('Running it');
    const logs = section('Logs');
    for (const entry of ERROR_CODES) {
      const row = rows.find((r) => r.code === entry.code);
      assert.ok(row, `README lists ${entry.code}`);
      const exit = entry.exit === null ? '—' : String(entry.exit);
      assert.equal(row.exit, exit, `README gives ${entry.code} its exit status`);
      assert.ok(row.when.startsWith(entry.meaning), `README says of ${entry.code}: ${entry.meaning}`);
      // Those that end a command are with the commands, the others with the logs.
      const table = entry.exit === null ? logs : commands;
      assert.ok(table.includes(`| \`${entry.code}\` |`), `${entry.code} is in the right table`);
    }
    const listed = ERROR_CODES.map((e) => e.code).sort();
    assert.deepEqual(rows.map((r) => r.code).sort(), listed, 'the README lists no code the catalogue lacks');
  });

  it('has every KR_ code the code gives in the catalogue', () => {
    const listed = new Set<string>(ERROR_CODES.map((e) => e.code));
    const given = new Set<string>();
    for (const dir of ['src', 'proxy', 'nginx']) {
      const files = readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' });
      for (const file of files.filter((f) => f.endsWith('.ts'))) {
        for (const [, code] of read(join(dir, file)).matchAll(/'(KR_[A-Z_]*[A-Z])'/g)) given.add(code as string);
      }
    }
    assert.ok(given.size >= 5, `codes found in the sources: ${[...given].join(', ')}`);
    for (const code of given) assert.ok(listed.has(code), `${code} is in src/core/error-codes.ts`);
  });
});

describe('README: commands, demo and nginx.conf', () => {
  it('shows a newcomer exactly two commands, each doing its own set-up', () => {
    const quickStart = section('Quick start');
    const commands = [...quickStart.matchAll(/```sh\n([^\n]+)\n```/g)].map((m) => m[1]);
    assert.deepEqual(commands, ['npm start', 'npm test']);
    // Each installs and builds what it needs first, and `npm start` is the demo.
    const { scripts } = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    assert.match(scripts.prestart ?? '', /^node scripts\/setup\.mjs$/);
    assert.match(scripts.pretest ?? '', /^node scripts\/setup\.mjs && /);
    assert.match(scripts.start ?? '', / demo$/);
    assert.ok(existsSync(join(ROOT, 'examples/demo/demo.yaml')));
  });

  it('names only npm scripts that exist', () => {
    const { scripts } = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    const named = [...readme.matchAll(/npm run ([a-z][\w:-]*)/g)].map((m) => m[1] as string);
    assert.ok(named.length > 0);
    for (const name of named) assert.ok(name in scripts, `package.json has the script ${name}`);
  });

  it('shows what the demo prints, line for line', () => {
    const config = loadConfig(withDemoDefaults({}));
    const manifest = join(ROOT, 'examples/demo/demo.yaml');
    const pods = demoPodSpecs(
      parseManifest(read('examples/demo/demo.yaml'), manifest).pods,
      config.pathsAnnotation,
    ).length;
    const printed = demoCommands({
      config,
      port: config.port,
      adminPort: config.adminPort === 'off' ? null : config.adminPort,
      backend: config.backend,
      manifest,
      wsClient: join(ROOT, 'examples/demo/ws-client.mjs'),
      pods,
      cwd: ROOT,
    });
    for (const line of printed.split('\n').filter((l) => l !== ''))
      assert.ok(lines.includes(line), `README shows the demo's line ${JSON.stringify(line)}`);
  });

  it('shows the documented nginx.conf exactly as the renderer writes it', () => {
    const golden = read('test/golden/three-pods.conf');
    assert.ok(
      readme.includes(`\`\`\`nginx\n${golden}\`\`\``),
      'README holds test/golden/three-pods.conf in an nginx block',
    );
  });
});

describe('README: metrics, endpoints, commands and links', () => {
  it('lists every metric the admin server registers', () => {
    const names = [...read('src/admin/metrics.ts').matchAll(/'(k8s_router_[a-z_]+)'/g)].map((m) => m[1]);
    assert.ok(names.length >= 25);
    for (const name of names)
      assert.match(readme, new RegExp(`^\\| \`${name}\` \\| (counter|gauge) \\|`, 'm'), `README lists ${name}`);
  });

  it('lists every admin endpoint', () => {
    const paths = [...read('src/admin/server.ts').matchAll(/app\.get\('([^']+)'/g)].map((m) => m[1] as string);
    assert.ok(paths.length >= 7);
    const table = section('Admin server');
    for (const path of paths)
      assert.match(
        table,
        new RegExp(`^\\| [^\\n]*\`${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\``, 'm'),
        `README lists ${path}`,
      );
  });

  it('lists every command of the CLI', () => {
    const commands = [...read('src/cli.ts').matchAll(/\.command\('([a-z]+)'\)/g)].map((m) => m[1] as string);
    assert.ok(commands.length >= 4);
    for (const command of commands)
      assert.match(section('Running it'), new RegExp(`^k8s-router ${command} `, 'm'), `README lists ${command}`);
  });

  it('names every example manifest', () => {
    const manifests = readdirSync(join(ROOT, 'examples'), { recursive: true, encoding: 'utf8' }).filter((f) =>
      /\.ya?ml$/.test(f),
    );
    assert.ok(manifests.length >= 5);
    for (const file of manifests)
      assert.ok(
        readme.includes(`examples/${file}`) || readme.includes(`(examples/${file})`),
        `README names examples/${file}`,
      );
  });

  it('names only files that exist, and links only to files and headings that exist', () => {
    for (const [, file] of readme.matchAll(/((?:examples|scripts)\/[\w./-]+[\w-])/g)) {
      assert.ok(existsSync(join(ROOT, file as string)), `${file} exists`);
    }
    const headings = anchors();
    for (const [, target] of readme.matchAll(/\]\(([^)\s]+)\)/g)) {
      const link = target as string;
      if (/^[a-z]+:/.test(link)) continue;
      if (link.startsWith('#')) assert.ok(headings.has(link.slice(1)), `a heading has the anchor ${link}`);
      else assert.ok(existsSync(join(ROOT, link.replace(/#.*$/, ''))), `${link} exists`);
    }
  });

  it('keeps the section the benchmark runner rewrites', () => {
    const start = readme.split('<!-- bench-summary:start -->').length - 1;
    const end = readme.split('<!-- bench-summary:end -->').length - 1;
    assert.equal(start, 1);
    assert.equal(end, 1);
    assert.ok(readme.indexOf('<!-- bench-summary:start -->') < readme.indexOf('<!-- bench-summary:end -->'));
  });
});

describe('CI', () => {
  it('runs the README test command after installing nginx', () => {
    const ci = read('.ci/run');
    assert.match(ci, /apt-get install -y[^\n]* nginx/);
    assert.match(ci, /^npm ci && npm test$/m);
  });
});
