import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { parseAllDocuments } from 'yaml';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { sendRaw, type RawOutcome } from '../conformance/raw-http.js';
import { eventually } from '../support/eventually.js';
import { manifestText, podFor } from '../support/manifests.js';
import { apiKeySecret } from '../support/objects.js';
import { startPod, type TestPod } from '../support/pods.js';
import { followRouter, type RouterProcess } from '../support/router-process.js';
import { baseImageOf, ensureBaseImage } from './base-image.js';
import { buildImage } from './build.js';
import { runCommand } from './commands.js';
import { runAsDeployed } from './deployment.js';
import { grantableUlimits, imageSize, megabytes, podman, PODMAN_GLOBAL, podmanProblem } from './podman.js';
import { NGINX_MODES } from '../../src/core/config.js';

// `npm run test:image`: the Dockerfile built with podman, and the image run the way the
// example DaemonSet runs it (its user, no capability, no privilege escalation, a read-only
// root with /tmp writable, its resource limits and settings), on the nginx backend, in
// every nginx mode, following a manifest mounted read-only. The pods live on this
// machine's loopback, so the container shares the host's network instead of getting
// the pod network and hostPort of a cluster. Without podman it fails, saying so.

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const IMAGE = 'localhost/k8s-router:image-test';
const DAEMON_SET = 'examples/k8s-router-daemonset.yaml';
/** Where the test mounts the manifest in the container. */
const MANIFEST_DIR = '/etc/k8s-router';
/** The API key of the billing namespace, as clients send it: the Secret's base64 text. */
const BILLING_KEY = Buffer.from('image-test-secret').toString('base64');
/** SIGTERM to exit: nothing is in flight, so this is the router stopping nginx and itself. */
const STOP_BOUND_MS = 5_000;

const report = (line: string): void => console.log(`image test: ${line}`);
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const header = (outcome: RawOutcome, name: string): string | undefined =>
  outcome.kind === 'response' ? outcome.headers.find(([k]) => k.toLowerCase() === name)?.[1] : undefined;
const statusOf = (outcome: RawOutcome): number | 'closed without an answer' =>
  outcome.kind === 'response' ? outcome.status : 'closed without an answer';

/** An nginx.conf that loads Debian's Lua module and answers with the versions of ngx_lua and lua-resty-core. */
function luaNginxConf(port: number): string {
  return [
    'load_module /usr/lib/nginx/modules/ndk_http_module.so;',
    'load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;',
    'daemon off;',
    'pid /tmp/nginx.pid;',
    'error_log stderr;',
    'events {}',
    'http {',
    '  access_log off;',
    // Debian's defaults are under /var/lib/nginx, on the read-only root.
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path /tmp/${kind};`),
    '  server {',
    `    listen 127.0.0.1:${port};`,
    '    location / {',
    '      content_by_lua_block {',
    '        ngx.say("ngx_lua ", ngx.config.ngx_lua_version, ", resty.core ", require("resty.core").version)',
    '      }',
    '    }',
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Makes the base image if it is missing, builds the image, and reports their sizes and the layers it adds. */
async function buildTheImage(ulimits: string[]): Promise<void> {
  const base = baseImageOf(await readFile(join(ROOT, 'Dockerfile'), 'utf8'));
  const ready = await ensureBaseImage(base, report);
  report(
    `base image ${base.name}: ${ready.how} in ${seconds(ready.ms)}, ${megabytes(await imageSize(base.qualified))}`,
  );

  await mkdir(join(ROOT, 'test-output'), { recursive: true });
  const built = await buildImage(ROOT, IMAGE, ulimits, join(ROOT, 'test-output', 'image-build.log'));
  report(
    `podman build: ${seconds(built.ms)} ` +
      `(${built.ca === null ? 'no extra CA' : `npm's extra CA ${built.ca} as a build secret`})`,
  );
  report(`image ${IMAGE}: ${megabytes(await imageSize(IMAGE))}; the layers the runtime stage adds to the base:`);
  const history = await podman(['history', '--no-trunc', '--format', '{{.Size}}|{{.CreatedBy}}', IMAGE], {
    timeoutMs: 60_000,
  });
  for (const [size = '', step = ''] of history
    .trim()
    .split('\n')
    .slice(0, -1)
    .map((l) => l.split('|'))) {
    const copied = /#\(nop\) COPY \S+ in (\S+)/.exec(step)?.[1];
    if (size !== '0 B')
      report(
        `  ${size.padStart(8)}  ` +
          (copied === undefined ? step.replace('/bin/sh -c ', 'RUN ').slice(0, 100) : `COPY to ${copied}`),
      );
  }
}

/** The test's pods on this machine's loopback, and the manifest that routes them, written in `work`. */
async function startPodsAndManifest(work: string): Promise<TestPod[]> {
  // 127.0.0.200-230 is this test's range of pod addresses.
  const pods = [
    await startPod('shop-0', '127.0.0.200'),
    await startPod('shop-1', '127.0.0.201'),
    await startPod('billing-0', '127.0.0.202'),
  ];
  const [shop0, shop1, billing0] = pods as [TestPod, TestPod, TestPod];
  const shop = { namespace: 'shop', hosts: 'shop.image.test', paths: ['/shop', '/ws'] };
  await writeFile(
    join(work, 'cluster.yaml'),
    manifestText([
      podFor(shop0, shop),
      podFor(shop1, shop),
      podFor(billing0, { namespace: 'billing', hosts: 'billing.image.test', paths: ['/api'] }),
      apiKeySecret('billing', 'image-test-secret'),
    ]),
  );
  await chmod(join(work, 'cluster.yaml'), 0o644);
  return pods;
}

/** What the checks share: the image's setting for podman, the example DaemonSet, the test's files and pods. */
interface ImageRun {
  ulimits: string[];
  daemonSet: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  pods: TestPod[];
  /** `podman run` for a container named `name`, run with the DaemonSet's `flags`, the test's files mounted. */
  runAsDaemonSet: (name: string, flags: string[]) => string[];
}

async function loadsEveryDependency({ ulimits }: ImageRun): Promise<void> {
  const { dependencies } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  const names = JSON.stringify(Object.keys(dependencies));
  const script = `for (const name of ${names}) await import(name); console.log('loaded');`;
  const result = await runCommand(
    'podman',
    [
      ...PODMAN_GLOBAL,
      'run',
      '--rm',
      '--network=none',
      ...ulimits,
      '--entrypoint=node',
      IMAGE,
      '--input-type=module',
      '-e',
      script,
    ],
    { timeoutMs: 120_000 },
  );
  assert.equal(`${result.exit} ${result.stdout.trim()}`, '0 loaded', result.stderr);
}

async function answersFromLua({ daemonSet, runAsDaemonSet }: ImageRun, work: string): Promise<void> {
  const luaPort = await pickFreeLoopbackPort();
  await writeFile(join(work, 'lua.conf'), luaNginxConf(luaPort));
  await chmod(join(work, 'lua.conf'), 0o644);
  const name = `k8s-router-image-test-lua-${process.pid}`;
  const { flags } = runAsDeployed(daemonSet, 'k8s-router', { 'metadata.name': name });
  const nginx = spawn(
    'podman',
    [
      ...runAsDaemonSet(name, flags),
      '--entrypoint=nginx',
      IMAGE,
      '-p',
      '/tmp',
      '-e',
      'stderr',
      '-c',
      `${MANIFEST_DIR}/lua.conf`,
    ],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  nginx.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  try {
    const body = await eventually(
      async () => {
        if (nginx.exitCode !== null) throw new Error(`nginx exited ${nginx.exitCode}: ${stderr}`);
        const answer = await fetch(`http://127.0.0.1:${luaPort}/`, { signal: AbortSignal.timeout(2_000) }).catch(
          () => null,
        );
        return answer?.status === 200 ? answer.text() : undefined;
      },
      'nginx in the image to answer from Lua',
      60_000,
    );
    report(`nginx in the image answers from Lua: ${body.trim()}`);
    assert.match(body, /^ngx_lua \d+, resty\.core \d+\.\d+\.\d+\n$/);
  } finally {
    await runCommand('podman', [...PODMAN_GLOBAL, 'rm', '--force', '--time=5', name], { timeoutMs: 60_000 });
  }
}

/** The router's container in one nginx mode, and how the checks reach it. */
interface ModeRun {
  mode: string;
  name: string;
  pods: TestPod[];
  router: RouterProcess;
  port: number;
  admin: (path: string) => Promise<Response>;
  get: (host: string, path: string, headers?: [string, string][]) => Promise<RawOutcome>;
  logsSoFar: () => string;
}

/** Starts the image as the DaemonSet runs it in `mode`, on free ports of this machine (it serves a little later). */
async function spawnModeRun(image: ImageRun, mode: string, name: string): Promise<ModeRun> {
  const port = await pickFreeLoopbackPort();
  const adminPort = await pickFreeLoopbackPort();
  const deployed = runAsDeployed(image.daemonSet, 'k8s-router', { 'metadata.name': name });
  const env: Record<string, string> = {
    ...deployed.env,
    // Free ports of this machine, on loopback only: the host's network is shared with other tests.
    PORT: String(port),
    ADMIN_PORT: String(adminPort),
    LISTEN_ADDRESS: '127.0.0.1',
    ADMIN_ADDRESS: '127.0.0.1',
    // Each mode in turn, whichever the example picks.
    NGINX_MODE: mode,
  };
  const args = [
    ...image.runAsDaemonSet(name, deployed.flags),
    ...Object.entries(env).map(([k, v]) => `--env=${k}=${v}`),
    IMAGE,
    ...deployed.args,
    '--backend',
    'nginx',
    '--manifest',
    `${MANIFEST_DIR}/cluster.yaml`,
  ];
  report(`NGINX_MODE=${mode}: podman ${args.join(' ')}`);
  const router = followRouter(spawn('podman', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  return {
    mode,
    name,
    pods: image.pods,
    router,
    port,
    admin: (path) => fetch(`http://127.0.0.1:${adminPort}${path}`, { signal: AbortSignal.timeout(5_000) }),
    get: (host, path, headers = []) =>
      sendRaw(port, { method: 'GET', target: path, headers: [['Host', host], ...headers] }, 5_000),
    logsSoFar: () => router.logs.map((l) => JSON.stringify(l)).join('\n'),
  };
}

async function answersHealthAndReadiness({ admin }: ModeRun): Promise<void> {
  const health = await admin('/healthz');
  assert.equal(health.status, 200);
  assert.equal(((await health.json()) as { status: string }).status, 'ok');
  const ready = await eventually(
    async () => {
      const answer = await admin('/readyz');
      return answer.status === 200 ? ((await answer.json()) as { ready: boolean; reason: string }) : undefined;
    },
    '/readyz to answer 200',
    30_000,
  );
  assert.equal(ready.ready, true, ready.reason);
}

async function routesToThePods({ mode, pods, get, logsSoFar }: ModeRun): Promise<void> {
  // The pods serve every mode in turn: this mode's requests are the ones that name it.
  const first = await get('shop.image.test', `/shop/cart?n=1&mode=${mode}`);
  const second = await get('shop.image.test', `/shop/cart?n=2&mode=${mode}`);
  assert.deepEqual([statusOf(first), statusOf(second)], [200, 200], logsSoFar());
  // Which pod answers which is the balancer's business (and with several workers, each has its own turn).
  for (const answer of [first, second]) assert.match(String(header(answer, 'x-pod')), /^shop-[01]$/);
  assert.deepEqual(
    pods.flatMap((p) => p.received.filter((r) => r.uri.endsWith(`&mode=${mode}`)).map((r) => r.uri)).sort(),
    [`/shop/cart?n=1&mode=${mode}`, `/shop/cart?n=2&mode=${mode}`],
  );
}

async function answersWithTheApiKeyOnly({ get }: ModeRun): Promise<void> {
  assert.equal(statusOf(await get('billing.image.test', '/api')), 403);
  assert.equal(statusOf(await get('billing.image.test', '/api', [['X-ROUTING-API-KEY', 'wrong']])), 403);
  const keyed = await get('billing.image.test', '/api', [['X-ROUTING-API-KEY', BILLING_KEY]]);
  assert.deepEqual([statusOf(keyed), header(keyed, 'x-pod')], [200, 'billing-0']);
}

async function carriesAWebSocket({ port }: ModeRun): Promise<void> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, {
    headers: { Host: 'shop.image.test' },
    handshakeTimeout: 5_000,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const echoed = new Promise<string>((resolve) => ws.once('message', (data) => resolve((data as Buffer).toString())));
    ws.send('hello through the image');
    assert.match(await echoed, /^shop-[01]:hello through the image$/);
  } finally {
    ws.terminate();
  }
}

async function exportsItsMetrics({ admin }: ModeRun): Promise<void> {
  const answer = await admin('/metrics');
  assert.equal(answer.status, 200);
  const text = await answer.text();
  const value = (line: string): string | undefined =>
    new RegExp(`^${line.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1];
  assert.deepEqual(
    {
      info: value('k8s_router_info{backend="nginx",source="manifest"}'),
      ready: value('k8s_router_ready'),
      nginxUp: value('k8s_router_nginx_up'),
      routes: value('k8s_router_routes'),
    },
    { info: '1', ready: '1', nginxUp: '1', routes: '3' },
    text
      .split('\n')
      .filter((l) => l.startsWith('k8s_router_'))
      .join('\n'),
  );
}

async function runsAsItsUserWithoutCapabilities({ name }: ModeRun): Promise<void> {
  const top = await podman(['top', name, 'huser', 'capeff', 'args'], { timeoutMs: 60_000 });
  const processes = top
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/));
  const commands = processes.map((p) => p.slice(2).join(' '));
  assert.ok(
    commands.some((c) => c.startsWith('nginx: master process')) &&
      commands.some((c) => c.startsWith('nginx: worker process')),
    top,
  );
  assert.ok(processes.length >= 4, top);
  for (const [user, caps] of processes) assert.deepEqual([user, caps], ['10001', 'none'], top);
}

async function stopsOnSigterm({ mode, name, router, logsSoFar }: ModeRun): Promise<void> {
  const started = Date.now();
  // The kubelet's way: SIGTERM, and SIGKILL only after the grace period (10 s here).
  await podman(['stop', '--time=10', name], { timeoutMs: 60_000 });
  const stopMs = Date.now() - started;
  const exit = await router.exited;
  const stopped = router.logs.find((l) => l.msg === 'stopped');
  report(
    `NGINX_MODE=${mode}: podman stop took ${stopMs} ms ` +
      `(the router's own stop: ${String(stopped?.ms)} ms); exit status ${exit}`,
  );
  assert.equal(exit, 0, logsSoFar());
  assert.ok(stopMs < STOP_BOUND_MS, `stopped after ${stopMs} ms`);
}

function describeMode(mode: string, image: () => ImageRun): void {
  describe(`NGINX_MODE=${mode}, on the nginx backend`, () => {
    const name = `k8s-router-image-test-${mode}-${process.pid}`;
    let run: ModeRun;

    before(async () => {
      const started = Date.now();
      run = await spawnModeRun(image(), mode, name);
      await run.router.waitForLog(
        (l) => l.msg === 'k8s-router is serving',
        'the router in the container to serve',
        90_000,
      );
      report(`NGINX_MODE=${mode}: serving ${seconds(Date.now() - started)} after podman run`);
    });

    after(async () => {
      // Only when a check failed before the container was stopped.
      if (run !== undefined && !run.router.hasExited())
        await runCommand('podman', [...PODMAN_GLOBAL, 'rm', '--force', name], { timeoutMs: 60_000 });
    });

    it('answers /healthz, and /readyz with 200 once nginx serves the first table', () =>
      answersHealthAndReadiness(run));
    it('routes through nginx to the pods of the route', () => routesToThePods(run));
    it('answers 404 for a known host without a route for the path', async () => {
      assert.equal(statusOf(await run.get('shop.image.test', '/nothing-here')), 404);
    });
    it('closes the connection without an answer for an unknown host (444)', async () => {
      assert.equal(statusOf(await run.get('unknown.image.test', '/shop')), 'closed without an answer');
    });
    it("answers 403 without the namespace's API key and 200 with it", () => answersWithTheApiKeyOnly(run));
    it('carries a WebSocket through nginx, echoed by a pod', () => carriesAWebSocket(run));
    it('exports its metrics: ready, nginx up, the routes of the manifest', () => exportsItsMetrics(run));
    it('runs every process (tini, the router, nginx master and worker) as uid 10001, no capability', () =>
      runsAsItsUserWithoutCapabilities(run));
    it(`stops on SIGTERM (podman stop) with exit status 0 within ${STOP_BOUND_MS / 1000} s`, () => stopsOnSigterm(run));
  });
}

describe('the image: built from the Dockerfile, run as the example DaemonSet runs it', () => {
  let work: string;
  let image: ImageRun;
  let pods: TestPod[] = [];

  before(async () => {
    // One line, and the run fails: an image test that cannot run is not a pass.
    const problem = await podmanProblem();
    if (problem !== null) throw new Error(problem);
    const ulimits = await grantableUlimits();
    const documents = parseAllDocuments(await readFile(join(ROOT, DAEMON_SET), 'utf8')).map((d) => d.toJS());
    const daemonSet = documents.find((o) => o.kind === 'DaemonSet');
    await buildTheImage(ulimits);

    work = await mkdtemp(join(tmpdir(), 'k8s-router-image-test-'));
    // Readable by the container's user, as a ConfigMap volume is (mkdtemp makes it 0700).
    await chmod(work, 0o755);
    pods = await startPodsAndManifest(work);
    const runAsDaemonSet = (name: string, flags: string[]): string[] => [
      ...PODMAN_GLOBAL,
      'run',
      '--rm',
      `--name=${name}`,
      '--network=host',
      ...ulimits,
      ...flags,
      `--volume=${work}:${MANIFEST_DIR}:ro`,
    ];
    image = { ulimits, daemonSet, pods, runAsDaemonSet };
  });

  after(async () => {
    await Promise.all(pods.map((p) => p.close()));
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('loads every production dependency it ships', () => loadsEveryDependency(image));
  it("answers from Lua in nginx: Debian's Lua module and lua-resty-core, which the dynamic mode needs", () =>
    answersFromLua(image, work));

  for (const mode of NGINX_MODES) describeMode(mode, () => image);
});
