import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

// No Docker engine here, so the image cannot be built in CI: these check by reading what
// can be checked. The stages, what the runtime stage takes from them, the user and the
// entrypoint, and that the Node in the image is the one CI tests on.

const read = (path: string): string => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');

interface Instruction {
  keyword: string;
  args: string;
}

interface Stage {
  name: string;
  image: string;
  instructions: Instruction[];
}

/** Instructions with continuation lines joined and comments dropped, then grouped by FROM. */
function parseDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  const logical = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const line of logical) {
    const [, keyword = '', rest = ''] = /^(\S+)\s+(.*)$/.exec(line) ?? [];
    const instruction = { keyword: keyword.toUpperCase(), args: rest.replace(/\s+/g, ' ') };
    if (instruction.keyword === 'ARG' && stages.length === 0) {
      const [name = '', value = ''] = rest.split('=');
      args.set(name, value);
    } else if (instruction.keyword === 'FROM') {
      const [, image = '', name = ''] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest) ?? [];
      stages.push({ name, image: image.replace(/^\$\{(\w+)\}$/, (_, arg: string) => args.get(arg) ?? image), instructions: [] });
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return { args, stages };
}

const { stages } = parseDockerfile(read('Dockerfile'));
const stage = (name: string): Stage => {
  const found = stages.find((s) => s.name === name);
  assert.ok(found, `a stage named ${name}`);
  return found;
};
const runs = (s: Stage): string => s.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args).join(' && ');
const copies = (s: Stage): string[] => s.instructions.filter((i) => i.keyword === 'COPY').map((i) => i.args);
const runtime = stages.at(-1) as Stage;
const nodeMajor = (image: string): number => Number(/^node:(\d+)[-.]/.exec(image)?.[1]);

describe('Dockerfile', () => {
  it('has a build stage, a production-dependencies stage and the runtime last', () => {
    assert.deepEqual(stages.map((s) => s.name), ['build', 'production-dependencies', 'runtime']);
  });

  it('builds with every dependency: npm ci, then the build script', () => {
    const build = runs(stage('build'));
    assert.match(build, /npm ci(?! [^&]*--omit)/, 'npm ci without --omit');
    assert.ok(build.indexOf('npm ci') < build.indexOf('npm run build'), `npm ci before npm run build: ${build}`);
    // It compiles what tsconfig.build.json includes, so it must copy exactly that.
    const included = (JSON.parse(read('tsconfig.build.json')) as { include: string[] }).include;
    const copied = copies(stage('build')).flatMap((c) => c.split(' ').slice(0, -1)).filter((src) => !src.includes('.json'));
    assert.deepEqual(copied.sort(), [...included].sort());
  });

  it('installs production dependencies only, from the lock file', () => {
    assert.match(runs(stage('production-dependencies')), /npm ci --omit=dev/);
    assert.deepEqual(copies(stage('production-dependencies')), ['package.json package-lock.json ./']);
  });

  it('runs dist/ with the production dependencies only: no sources, tests or dev dependencies', () => {
    assert.deepEqual(copies(runtime).sort(), [
      '--from=build /app/dist ./dist',
      '--from=build /app/package.json ./',
      '--from=production-dependencies /app/node_modules ./node_modules',
    ]);
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim());
    for (const path of ['node_modules', 'dist', 'test', 'bench', '.git']) assert.ok(ignored.includes(path), `.dockerignore leaves out ${path}`);
  });

  it("adds Debian's nginx and its Lua module, and tini, without the default site; nginx and node bind port 80", () => {
    const run = runs(runtime);
    assert.match(run, /apt-get install -y --no-install-recommends nginx libnginx-mod-http-lua lua-resty-core tini/);
    assert.match(run, /rm -rf [^&]*\/etc\/nginx\/sites-enabled\/default/);
    assert.match(run, /setcap cap_net_bind_service=\+ep \/usr\/sbin\/nginx/);
    assert.match(run, /setcap cap_net_bind_service=\+ep "\$\(readlink -f \/usr\/local\/bin\/node\)"/);
  });

  it('runs as a numeric non-root user, under tini, the compiled CLI', () => {
    const user = runtime.instructions.filter((i) => i.keyword === 'USER').map((i) => i.args);
    assert.deepEqual(user, ['10001:10001']);
    assert.match(runs(runtime), /useradd [^&]*--uid 10001 --gid 10001/);
    const entrypoint = JSON.parse(runtime.instructions.find((i) => i.keyword === 'ENTRYPOINT')?.args ?? '[]') as string[];
    assert.deepEqual(entrypoint, ['/usr/bin/tini', '--', 'node', '/app/dist/src/cli.js']);
    const bin = (JSON.parse(read('package.json')) as { bin: Record<string, string> }).bin['k8s-router'];
    assert.equal(`/app/${bin}`, entrypoint[3], 'the entrypoint is the package bin');
    assert.deepEqual(JSON.parse(runtime.instructions.find((i) => i.keyword === 'CMD')?.args ?? '[]'), ['run']);
  });

  it('uses Node 24 in every stage, which package.json allows and CI tests on', () => {
    assert.deepEqual(stages.map((s) => s.image), stages.map(() => 'node:24-bookworm-slim'));
    const major = nodeMajor(runtime.image);
    const engines = (JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node;
    assert.equal(engines, '>=20');
    assert.ok(major >= Number(engines.replace('>=', '')));
    const ci = read('.ci/run');
    assert.match(ci, new RegExp(`node@${major}\\b`), 'CI installs the same Node major');
    assert.match(ci, /^npm test$/m, 'and runs the suite again');
  });
});
