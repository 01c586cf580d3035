import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { crc32Long, findChashPoint, initChashPoints } from '../../proxy/consistent-hash.js';
import {
  adminPortOf,
  DEMO_START_TIMEOUT_MS,
  demoManifestCopy,
  demoPodItem,
  demoPodPids,
  isAlive,
  printedCommands,
  runShell,
} from '../support/demo.js';
import { eventually } from '../support/eventually.js';
import { runCli } from '../support/run-cli.js';
import { startRouterProcess, type RouterProcess } from '../support/router-process.js';
import { workDir } from '../support/work-dir.js';

// `k8s-router demo` as a user meets it: started as a process, then each command it
// prints is pasted into a shell and must do what the text beside it says. Each run uses
// a copy of the demo manifest with pods on addresses of its own (127.0.1xx.x).

const SHOP_PODS = ['shop-web-7d9f-a1', 'shop-web-7d9f-b2', 'shop-web-7d9f-c3'];
const statusLine = (curlOutput: string): string => curlOutput.split('\r\n')[0] ?? '';
const podsAnswering = (curlOutput: string): string[] =>
  curlOutput
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => (JSON.parse(line) as { pod: string }).pod);

async function startDemo(
  dir: string,
  manifest: string,
  extraArgs: string[] = [],
  env: Record<string, string> = {},
): Promise<RouterProcess> {
  const port = await pickFreeLoopbackPort();
  const demo = await startRouterProcess(
    [
      '--manifest',
      manifest,
      '--port',
      String(port),
      '--admin-port',
      '0',
      '--hold-off-ms',
      '20',
      '--nginx-prefix',
      join(dir, 'nginx'),
      ...extraArgs,
    ],
    env,
    { command: 'demo', startTimeoutMs: DEMO_START_TIMEOUT_MS },
  );
  await eventually(() => demo.stdout().includes('Ctrl-C stops'), 'the demo to print its commands', 10_000);
  return demo;
}

/** Stops the demo with SIGTERM and checks that nothing it started is left. */
async function stopAndCheckNothingLeft(demo: RouterProcess, others: number[] = []): Promise<void> {
  const stopped = new Set(demo.logs.filter((l) => l.msg === 'demo pod stopped').map((l) => l.pid as number));
  const pids = [...demoPodPids(demo).filter((pid) => !stopped.has(pid)), ...others];
  assert.ok(pids.length > 0);
  assert.ok(pids.every(isAlive), 'the processes run before SIGTERM');
  assert.equal(await demo.stop(), 0, 'the demo exits 0 on SIGTERM');
  assert.deepEqual(
    pids.filter(isAlive),
    [],
    `no process the demo started is alive after it exited (pids ${pids.join(', ')})`,
  );
}

/** What the proxy demo's checks use: the process, its manifest and the commands it printed. */
interface ProxyDemo {
  demo: RouterProcess;
  manifest: string;
  commands: string[];
}

function startsAPodProcessPerPod({ demo }: ProxyDemo): void {
  assert.deepEqual(
    demo.logs
      .filter((l) => l.msg === 'demo pod started')
      .map((l) => l.pod)
      .sort(),
    [
      'billing/billing-api-0',
      'chat/chat-0',
      'chat/chat-1',
      'intruder/intruder-0',
      'shop/shop-web-7d9f-a1',
      'shop/shop-web-7d9f-b2',
      'shop/shop-web-7d9f-c3',
      'shop/shop-web-7d9f-d4',
    ],
  );
}

async function roundRobinCurl({ commands }: ProxyDemo): Promise<void> {
  const first = commands[0] ?? '';
  assert.match(first, /^curl -s -H 'Host: shop\.k8s\.local' 'http:\/\/127\.0\.0\.1:\d+\/\?n=\[1-3\]'$/);
  const result = await runShell(first);
  assert.equal(result.code, 0, result.stderr);
  const pods = podsAnswering(result.stdout);
  assert.equal(pods.length, 3, result.stdout);
  const start = SHOP_PODS.indexOf(pods[0] as string);
  assert.ok(start >= 0, `answered by a demo pod: ${result.stdout}`);
  assert.deepEqual(
    pods,
    [0, 1, 2].map((n) => SHOP_PODS[(start + n) % 3]),
    'round robin in pod-name order',
  );
  const answer = JSON.parse(result.stdout.split('\n')[0] as string) as {
    namespace: string;
    method: string;
    uri: string;
    headers: Record<string, string>;
  };
  assert.equal(answer.namespace, 'shop');
  assert.equal(answer.method, 'GET');
  assert.equal(answer.uri, '/?n=1');
  assert.equal(answer.headers.host, 'shop.k8s.local');
}

async function notFoundCurl({ commands }: ProxyDemo): Promise<void> {
  const result = await runShell(commands[1] ?? '');
  assert.match(statusLine(result.stdout), /^HTTP\/1\.1 404 /);
}

async function unknownHostCurl({ commands }: ProxyDemo): Promise<void> {
  const result = await runShell(commands[2] ?? '');
  assert.equal(result.code, 52, `curl reports an empty reply: ${result.stderr}`);
  assert.equal(result.stdout, '');
}

async function apiKeyCurls({ commands }: ProxyDemo): Promise<void> {
  const without = await runShell(commands[3] ?? '');
  assert.match(statusLine(without.stdout), /^HTTP\/1\.1 403 /);
  const withKey = await runShell(commands[4] ?? '');
  assert.match(statusLine(withKey.stdout), /^HTTP\/1\.1 200 /);
  assert.deepEqual(podsAnswering(withKey.stdout), ['billing-api-0']);
}

async function webSocketCommand({ commands }: ProxyDemo): Promise<void> {
  const command = commands[5] ?? '';
  assert.match(
    command,
    /^node examples\/demo\/ws-client\.mjs ws:\/\/127\.0\.0\.1:\d+\/ws --host shop\.k8s\.local hello$/,
  );
  const result = await runShell(command);
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stdout.trim().split('\n');
  assert.match(lines[1] ?? '', /^< \{"pod":"shop-web-7d9f-[abc][123]","namespace":"shop",.*"uri":"\/ws"/);
  assert.equal(lines.at(-1), '< hello', 'the message comes back');
}

async function hashedChatCurls({ commands }: ProxyDemo): Promise<void> {
  // The demo's copy moved the chat pods to 127.0.101.41 and .42, port 3000.
  const points = initChashPoints(['127.0.101.41:3000', '127.0.101.42:3000']);
  for (const [i, client] of [
    [6, '127.0.0.2'],
    [7, '127.0.0.4'],
  ] as const) {
    const command = commands[i] ?? '';
    assert.equal(
      command,
      `curl -s --interface ${client} -H 'Host: chat.k8s.local' ` +
        `'http://127.0.0.1:${command.match(/:(\d+)\//)?.[1]}/?n=[1-3]'`,
    );
    const at = findChashPoint(points, crc32Long(client));
    const expected =
      points.servers[points.server[at % points.number] as number] === '127.0.101.41:3000' ? 'chat-0' : 'chat-1';
    const result = await runShell(command);
    assert.deepEqual(podsAnswering(result.stdout), [expected, expected, expected], result.stdout + result.stderr);
  }
}

async function statusPageAddress({ demo, commands }: ProxyDemo): Promise<void> {
  const url = commands[8] ?? '';
  assert.equal(url, `http://127.0.0.1:${adminPortOf(demo)}/`);
  const page = await fetch(url);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<title>k8s-router status<\/title>/);
}

async function appliesAnAddedPod({ demo, manifest, commands }: ProxyDemo): Promise<void> {
  const added = demoPodItem({
    name: 'shop-web-7d9f-e5',
    namespace: 'shop',
    ip: '127.0.101.15',
    port: 3000,
    hosts: 'shop.k8s.local fresh.k8s.local',
    paths: '3000:/',
  });
  await writeFile(manifest, `${await readFile(manifest, 'utf8')}${added}`);
  await demo.waitForLog(
    (l) => l.msg === 'demo pod started' && l.pod === 'shop/shop-web-7d9f-e5',
    'a process for the added pod',
  );
  await eventually(
    async () =>
      podsAnswering((await runShell(commands[0]?.replace('shop.k8s.local', 'fresh.k8s.local') ?? '')).stdout).includes(
        'shop-web-7d9f-e5',
      ),
    'the new host to be answered by the added pod',
    10_000,
  );
  const [aRound, another] = [await runShell(commands[0] ?? ''), await runShell(commands[0] ?? '')];
  assert.ok(
    [...podsAnswering(aRound.stdout), ...podsAnswering(another.stdout)].includes('shop-web-7d9f-e5'),
    'the added pod shares shop.k8s.local/ with the others',
  );
}

async function stopsARemovedPod({ demo, manifest }: ProxyDemo): Promise<void> {
  const pid = demo.logs.find((l) => l.msg === 'demo pod started' && l.pod === 'intruder/intruder-0')?.pid as number;
  assert.ok(isAlive(pid));
  const list = parse(await readFile(manifest, 'utf8')) as { items: Array<{ metadata: { name: string } }> };
  list.items = list.items.filter((item) => item.metadata.name !== 'intruder-0');
  await writeFile(manifest, stringify(list));
  await demo.waitForLog(
    (l) => l.msg === 'demo pod stopped' && l.pod === 'intruder/intruder-0',
    'the removed pod to be stopped',
    10_000,
  );
  assert.equal(isAlive(pid), false);
}

async function stopsEverythingOnSigterm({ demo }: ProxyDemo): Promise<void> {
  await stopAndCheckNothingLeft(demo);
}

function withTheProxy(): void {
  describe('with the in-process proxy', { concurrency: 1 }, () => {
    let dir: string;
    let manifest: string;
    let demo: RouterProcess;
    let commands: string[];

    before(async () => {
      assert.equal(
        (await runShell('curl --version')).code,
        0,
        'this test pastes the curl commands the demo prints: install curl (Debian: apt-get install -y curl)',
      );
      dir = await workDir('k8s-router-demo-');
      manifest = await demoManifestCopy(dir, 101);
      demo = await startDemo(dir, manifest);
      commands = printedCommands(demo.stdout());
    });

    after(async () => {
      if (demo !== undefined && isAlive(demo.pid)) await demo.stop();
      await rm(dir, { recursive: true, force: true });
    });

    const proxyDemo = (): ProxyDemo => ({ demo, manifest, commands });

    it('starts a process of the demo app for every running pod of the manifest', () =>
      startsAPodProcessPerPod(proxyDemo()));

    it('prints first a plain curl whose three requests are answered by the three shop pods in turn', () =>
      roundRobinCurl(proxyDemo()));

    it('prints a command that gets 404 for a path the host does not route', () => notFoundCurl(proxyDemo()));

    it('prints a command whose connection is closed without an answer, for an unknown host', () =>
      unknownHostCurl(proxyDemo()));

    it('prints the API-key commands: 403 without the key, 200 from the billing pod with it', () =>
      apiKeyCurls(proxyDemo()));

    it('prints a WebSocket command that needs only Node, and a shop pod echoes the message', () =>
      webSocketCommand(proxyDemo()));

    it(
      'prints two curls from two client addresses, ' +
        'each answered three times by the chat pod its address hashes to',
      () => hashedChatCurls(proxyDemo()),
    );

    it('prints the status page address, and it answers', () => statusPageAddress(proxyDemo()));

    it('applies an edit of the manifest live: a pod added to the file gets a process and joins the round robin', () =>
      appliesAnAddedPod(proxyDemo()));

    it('stops the process of a pod removed from the manifest', () => stopsARemovedPod(proxyDemo()));

    it('stops every process it started on SIGTERM', () => stopsEverythingOnSigterm(proxyDemo()));
  });
}

function withNginx(): void {
  describe('with --backend nginx', { concurrency: 1 }, () => {
    let dir: string;
    let demo: RouterProcess;

    before(async () => {
      dir = await workDir('k8s-router-demo-nginx-');
      demo = await startDemo(dir, await demoManifestCopy(dir, 102), ['--backend', 'nginx']);
    });

    after(async () => {
      if (demo !== undefined && isAlive(demo.pid)) await demo.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it('serves the same demo through the managed nginx, and SIGTERM stops nginx and the pods', async () => {
      const commands = printedCommands(demo.stdout());
      assert.match(demo.stdout(), /the managed nginx routes to them/);
      const result = await runShell(commands[0] ?? '');
      assert.equal(podsAnswering(result.stdout).length, 3, result.stdout + result.stderr);
      assert.ok(podsAnswering(result.stdout).every((pod) => SHOP_PODS.includes(pod)));
      const status = (await (await fetch(`http://127.0.0.1:${adminPortOf(demo)}/status`)).json()) as {
        dataPlanes: Array<{ nginx?: { pid: number } }>;
      };
      const nginxPid = status.dataPlanes[0]?.nginx?.pid;
      assert.equal(typeof nginxPid, 'number', 'the status names the nginx master');
      await stopAndCheckNothingLeft(demo, [nginxPid as number]);
    });
  });
}

function killedOutright(): void {
  describe('killed outright', () => {
    let dir: string;

    after(() => rm(dir, { recursive: true, force: true }));

    it('leaves no pod behind: each exits when its channel to the demo closes', async () => {
      dir = await workDir('k8s-router-demo-kill-');
      const demo = await startDemo(dir, await demoManifestCopy(dir, 107));
      const pids = demoPodPids(demo);
      assert.equal(pids.length, 8);
      process.kill(demo.pid, 'SIGKILL');
      assert.equal(await demo.stop(), 'SIGKILL');
      await eventually(() => pids.every((pid) => !isAlive(pid)), `the pods (${pids.join(', ')}) to exit`, 10_000);
    });
  });
}

function aPortInUse(): void {
  describe('a port in use', () => {
    let busy: Server;
    let dir: string;

    before(async () => {
      dir = await workDir('k8s-router-demo-busy-');
      busy = createServer();
      await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    });

    after(async () => {
      await new Promise((resolve) => busy.close(resolve));
      await rm(dir, { recursive: true, force: true });
    });

    const busyPort = (): number => (busy.address() as { port: number }).port;

    it('for the proxy: one line with the address and a stable code, exit 1', async () => {
      const manifest = await demoManifestCopy(dir, 103);
      const result = await runCli(['demo', '--manifest', manifest, '--port', String(busyPort()), '--admin-port', '0']);
      assert.equal(result.code, 1);
      assert.equal(
        result.stderr,
        `k8s-router: cannot listen on 127.0.0.1:${busyPort()} (PORT): the port is in use [KR_LISTEN_FAILED]\n`,
      );
      assert.equal(result.stdout, '');
    });

    it('for the admin server: one line naming ADMIN_PORT, exit 1', async () => {
      const manifest = await demoManifestCopy(dir, 103);
      const port = await pickFreeLoopbackPort();
      const result = await runCli([
        'demo',
        '--manifest',
        manifest,
        '--port',
        String(port),
        '--admin-port',
        String(busyPort()),
      ]);
      assert.equal(result.code, 1);
      assert.equal(
        result.stderr,
        `k8s-router: cannot listen on 127.0.0.1:${busyPort()} (admin server, ADMIN_PORT): ` +
          'the port is in use [KR_LISTEN_FAILED]\n',
      );
    });

    it('for a demo pod: one line naming the pod and its address, exit 1', async () => {
      // The billing pod's address is taken by something else.
      const pod = createServer();
      await new Promise<void>((resolve) => pod.listen(8080, '127.0.103.21', resolve));
      try {
        const manifest = await demoManifestCopy(dir, 103);
        const port = await pickFreeLoopbackPort();
        const result = await runCli([
          'demo',
          '--manifest',
          manifest,
          '--port',
          String(port),
          '--admin-port',
          '0',
          '--log-level',
          'silent',
        ]);
        assert.equal(result.code, 1);
        assert.equal(
          result.stderr,
          'k8s-router: cannot listen on 127.0.103.21:8080 (demo pod billing/billing-api-0): ' +
            'the port is in use [KR_LISTEN_FAILED]\n',
        );
      } finally {
        await new Promise((resolve) => pod.close(resolve));
      }
    });
  });
}

describe('k8s-router demo', { concurrency: 1 }, () => {
  withTheProxy();
  withNginx();
  killedOutright();
  aPortInUse();
});
