import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { NPM_CA_SECRET } from './image/build.js';

// What can be checked by reading the Dockerfile: the stages, what the runtime stage takes
// from them, the packages, the user, the port and the entrypoint, and that the Node in the
// image is the one CI tests on. The proof that the image works is `npm run test:image`,
// which builds it and runs it as the example DaemonSet does.

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
      stages.push({
        name,
        image: image.replace(/^\$\{(\w+)\}$/, (_, arg: string) => args.get(arg) ?? image),
        instructions: [],
      });
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
const runs = (s: Stage): string =>
  s.instructions
    .filter((i) => i.keyword === 'RUN')
    .map((i) => i.args)
    .join(' && ');
const copies = (s: Stage): string[] => s.instructions.filter((i) => i.keyword === 'COPY').map((i) => i.args);
const runtime = stages.at(-1) as Stage;
const nodeMajor = (image: string): number => Number(/^node:(\d+)[-.]/.exec(image)?.[1]);

describe('Dockerfile: stages', () => {
  it('has a build stage, a production-dependencies stage and the runtime last', () => {
    assert.deepEqual(
      stages.map((s) => s.name),
      ['build', 'production-dependencies', 'runtime'],
    );
  });

  it('builds with every dependency: npm ci, then the build script', () => {
    const build = runs(stage('build'));
    assert.match(build, /npm ci(?! [^&]*--omit)/, 'npm ci without --omit');
    assert.ok(build.indexOf('npm ci') < build.indexOf('npm run build'), `npm ci before npm run build: ${build}`);
    // It compiles what tsconfig.build.json includes, so it must copy exactly that.
    const included = (JSON.parse(read('tsconfig.build.json')) as { include: string[] }).include;
    const copied = copies(stage('build'))
      .flatMap((c) => c.split(' ').slice(0, -1))
      .filter((src) => !src.includes('.json'));
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
  });
});

describe('Dockerfile: context and secrets', () => {
  it('gets a build context of exactly the files the stages copy from it', () => {
    const lines = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    assert.equal(lines[0], '*', '.dockerignore leaves everything out first');
    const allowed = lines.slice(1).map((l) => l.replace(/^!/, ''));
    const fromContext = stages
      .flatMap((s) => copies(s).filter((c) => !c.startsWith('--from')))
      .flatMap((c) => c.split(' ').slice(0, -1));
    assert.deepEqual([...allowed].sort(), [...new Set(fromContext)].sort());
  });

  it('reads the extra CA bundle npm may need as a build secret, which no layer keeps', () => {
    const npmSteps = stages
      .flatMap((s) => s.instructions)
      .filter((i) => i.keyword === 'RUN' && i.args.includes('npm ci'));
    assert.equal(npmSteps.length, 2);
    for (const step of npmSteps) {
      assert.match(step.args, new RegExp(`--mount=type=secret,id=${NPM_CA_SECRET}\\b`));
      const secret = `/run/secrets/${NPM_CA_SECRET}`;
      assert.match(step.args, new RegExp(`NODE_EXTRA_CA_CERTS="\\$\\(test -s ${secret} && echo ${secret}\\)"`));
    }
    assert.doesNotMatch(runtime.instructions.map((i) => i.args).join('\n'), /npm-ca|NODE_EXTRA_CA_CERTS/);
  });
});

describe('Dockerfile: runtime image', () => {
  it("adds Debian's nginx, its Lua module, lua-resty-core and tini, no default site, no file capability", () => {
    const run = runs(runtime);
    assert.match(run, /apt-get install -y --no-install-recommends nginx libnginx-mod-http-lua lua-resty-core tini /);
    assert.match(run, /rm -rf [^&]*\/etc\/nginx\/sites-enabled\/default/);
    assert.match(run, /rm -rf [^&]*\/var\/lib\/apt\/lists\/\*/);
    // Purging libcap2-bin once removed nginx with it (nginx needs iproute2, which needs libcap2-bin).
    assert.doesNotMatch(read('Dockerfile'), /setcap|libcap2-bin|purge/);
  });

  it('listens on an unprivileged port, the one the example DaemonSet maps port 80 to', () => {
    const env = runtime.instructions.filter((i) => i.keyword === 'ENV').map((i) => i.args);
    assert.ok(env.includes('PORT=8080'), `ENV PORT=8080 in ${JSON.stringify(env)}`);
    assert.deepEqual(
      runtime.instructions.filter((i) => i.keyword === 'EXPOSE').map((i) => i.args),
      ['8080'],
    );
    const daemonSet = parseAllDocuments(read('examples/k8s-router-daemonset.yaml'))
      .map((d) => d.toJS())
      .find((o) => o.kind === 'DaemonSet');
    const [container] = daemonSet.spec.template.spec.containers;
    assert.deepEqual(
      container.env.find((e: { name: string }) => e.name === 'PORT'),
      { name: 'PORT', value: '8080' },
    );
    assert.deepEqual([container.ports[0].containerPort, container.ports[0].hostPort], [8080, 80]);
  });

  it('runs as a numeric non-root user, under tini, the compiled CLI', () => {
    const user = runtime.instructions.filter((i) => i.keyword === 'USER').map((i) => i.args);
    assert.deepEqual(user, ['10001:10001']);
    assert.match(runs(runtime), /useradd [^&]*--uid 10001 --gid 10001/);
    const entrypoint = JSON.parse(
      runtime.instructions.find((i) => i.keyword === 'ENTRYPOINT')?.args ?? '[]',
    ) as string[];
    assert.deepEqual(entrypoint, ['/usr/bin/tini', '--', 'node', '/app/dist/src/cli.js']);
    const bin = (JSON.parse(read('package.json')) as { bin: Record<string, string> }).bin['k8s-router'];
    assert.equal(`/app/${bin}`, entrypoint[3], 'the entrypoint is the package bin');
    assert.deepEqual(JSON.parse(runtime.instructions.find((i) => i.keyword === 'CMD')?.args ?? '[]'), ['run']);
  });

  it('uses Node 24 in every stage, which package.json allows and CI tests on, and CI builds and runs it', () => {
    assert.deepEqual(
      stages.map((s) => s.image),
      stages.map(() => 'node:24-bookworm-slim'),
    );
    const major = nodeMajor(runtime.image);
    const engines = (JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node;
    assert.equal(engines, '>=20');
    assert.ok(major >= Number(engines.replace('>=', '')));
    const ci = read('.ci/run');
    assert.match(ci, new RegExp(`node@${major}\\b`), 'CI installs the same Node major');
    assert.match(ci, /^npm test$/m, 'and runs the suite again');
    assert.match(ci, /^npm run test:image$/m, 'and builds and runs the image');
  });
});
