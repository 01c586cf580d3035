import assert from 'node:assert/strict';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { sendRaw, type RawOutcome } from '../conformance/raw-http.js';
import { adminPortOf, DEMO_START_TIMEOUT_MS, demoManifestCopy, runShell } from '../support/demo.js';
import { eventually } from '../support/eventually.js';
import { FakeApiServer } from '../support/fake-api-server.js';
import { manifestText, podFor } from '../support/manifests.js';
import { apiKeySecret } from '../support/objects.js';
import { startPod, type TestPod } from '../support/pods.js';
import { startRouterProcess, type RouterProcess } from '../support/router-process.js';
import { workDir } from '../support/work-dir.js';

// API keys never leave the router except in the nginx.conf nginx reads: not in a log line
// (at debug level, JSON or pretty), not in anything the admin server answers. Each
// scenario uses Secret values no other text could contain, sends requests that carry
// them, rotates them, and then reads every log line and every admin endpoint for each
// value, as stored in the Secret (base64) and as created (plain).

const base64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
const KEY_HEADER = 'X-ROUTING-API-KEY';
const ADMIN_PATHS = [
  '/',
  '/status-page.js',
  '/healthz',
  '/readyz',
  '/metrics',
  '/routes',
  '/status',
  '/nginx.conf',
  '/no-such-page',
];

/** Every form in which `secrets` could leak. */
const forms = (secrets: string[]): string[] => secrets.flatMap((s) => [s, base64(s)]);

function assertAbsent(text: string, secrets: string[], where: string): void {
  for (const form of forms(secrets))
    assert.ok(!text.includes(form), `${where} does not contain ${JSON.stringify(form)}`);
}

/** Reads every admin endpoint and checks none holds a secret; returns the bodies. */
async function checkAdmin(adminPort: number, secrets: string[]): Promise<Record<string, string>> {
  const bodies: Record<string, string> = {};
  for (const path of ADMIN_PATHS) {
    const res = await fetch(`http://127.0.0.1:${adminPort}${path}`);
    bodies[path] = `${[...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n')}\n\n${await res.text()}`;
    assertAbsent(bodies[path], secrets, `admin ${path}`);
  }
  // Not vacuous: the locked route is there, shown redacted.
  assert.match(bodies['/routes'] as string, /"apiKey": "<redacted>"/);
  assert.match(bodies['/nginx.conf'] as string, /!= "<redacted>"\) \{/);
  return bodies;
}

function checkLogs(router: RouterProcess, secrets: string[], tableChanges: number): void {
  // Not vacuous: the lines most at risk were written, for the first key and for each rotation.
  const changes = router.logs.filter(
    (l) => l.msg === 'route table changed' || (typeof l.text === 'string' && l.text.includes(' route table changed ')),
  );
  assert.ok(changes.length >= tableChanges, `${changes.length} "route table changed" lines, at least ${tableChanges}`);
  router.logs.forEach((line, i) => assertAbsent(JSON.stringify(line), secrets, `log line ${i + 1}`));
  assertAbsent(router.stdout(), secrets, 'standard output');
}

/** GET `target` on `host`, with the API key header when a key is given. */
const keyedGet = (port: number, host: string, target: string, key?: string): Promise<RawOutcome> =>
  sendRaw(
    port,
    {
      method: 'GET',
      target,
      headers: [['Host', host], ...(key === undefined ? [] : [[KEY_HEADER, key] as [string, string]])],
    },
    5_000,
  );

const statusOf = (outcome: RawOutcome): number | 'dropped' =>
  outcome.kind === 'response' ? outcome.status : 'dropped';

/** The demo on its manifest, whose Secret is rotated by editing the file. */
function demoWithPrettyLogs(): void {
  describe('k8s-router demo, pretty logs at debug level', () => {
    const first = 'Quokka-Demo-Plain-71';
    const second = 'Wombat-Demo-Rotated-92';
    let dir: string;
    let manifest: string;
    let demo: RouterProcess;
    let adminPort: number;

    before(async () => {
      dir = await workDir('k8s-router-secrets-demo-');
      manifest = await demoManifestCopy(dir, 104, (text) =>
        text.replace('api-key: ZGVtby1zZWNyZXQ=', `api-key: ${base64(first)}`),
      );
      adminPort = await pickFreeLoopbackPort();
      const port = await pickFreeLoopbackPort();
      demo = await startRouterProcess(
        ['--manifest', manifest, '--port', String(port), '--admin-port', String(adminPort), '--hold-off-ms', '20'],
        { LOG_FORMAT: 'pretty', LOG_LEVEL: 'debug' },
        { command: 'demo', startTimeoutMs: DEMO_START_TIMEOUT_MS },
      );
      await eventually(() => demo.stdout().includes('Ctrl-C stops'), 'the demo to print its commands', 10_000);
    });

    after(async () => {
      await demo?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it('uses and rotates the key, and shows it nowhere', async () => {
      assert.ok(
        demo.logs.every((l) => typeof l.text === 'string' && !l.text.startsWith('{')),
        'pretty lines, not JSON',
      );
      const port = Number(/http:\/\/127\.0\.0\.1:(\d+)/.exec(demo.stdout())?.[1]);
      const api = (key?: string): Promise<RawOutcome> => keyedGet(port, 'billing.k8s.local', '/api', key);
      assert.equal(statusOf(await api(base64(first))), 200);
      assert.equal(statusOf(await api(first)), 403);
      const ws = await runShell(
        `node examples/demo/ws-client.mjs ws://127.0.0.1:${port}/ws --host shop.k8s.local ` +
          `--header '${KEY_HEADER}: ${base64(first)}' ${first}`,
      );
      assert.equal(ws.code, 0, ws.stderr);
      await checkAdmin(adminPort, [first, second]);

      await writeFile(
        manifest,
        (await readFile(manifest, 'utf8')).replace(`api-key: ${base64(first)}`, `api-key: ${base64(second)}`),
      );
      await eventually(
        async () => statusOf(await api(base64(second))) === 200,
        'the rotated key to open the route',
        10_000,
      );
      assert.equal(statusOf(await api(base64(first))), 403, 'the old key no longer works');
      await checkAdmin(adminPort, [first, second]);

      assert.equal(await demo.stop(), 0);
      checkLogs(demo, [first, second], 2);
    });
  });
}

/** A router following a fake Kubernetes API server, whose Secret is rotated by an update. */
function clusterWithJsonLogs(): void {
  describe('k8s-router run following a Kubernetes API server, JSON logs at debug level', () => {
    const first = 'Platypus-Cluster-Plain-33';
    const second = 'Echidna-Cluster-Rotated-58';
    let api: FakeApiServer;
    let pod: TestPod;
    let router: RouterProcess;
    let port: number;

    before(async () => {
      api = await FakeApiServer.start();
      pod = await startPod('vault-0', '127.0.105.11');
      port = await pickFreeLoopbackPort();
      router = await startRouterProcess(['--backend', 'proxy'], {
        PORT: String(port),
        LISTEN_ADDRESS: '127.0.0.1',
        HOLD_OFF_MS: '20',
        KUBECONFIG: api.kubeConfigFile(),
      });
    });

    after(async () => {
      await router?.stop();
      await pod?.close();
      await api?.close();
    });

    it('uses and rotates the key, and shows it nowhere', async () => {
      const get = (key?: string): Promise<RawOutcome> => keyedGet(port, 'vault.test', '/', key);
      api.upsert(podFor(pod, { namespace: 'vault', hosts: 'vault.test', paths: ['/'] }));
      api.upsert(apiKeySecret('vault', first));
      await eventually(async () => statusOf(await get(base64(first))) === 200, 'the key to open the route', 10_000);
      assert.equal(statusOf(await get()), 403);
      const adminPort = adminPortOf(router);
      const bodies = await checkAdmin(adminPort, [first, second]);
      assert.match(bodies['/status'] as string, /"kind": "cluster"/);

      api.upsert(apiKeySecret('vault', second));
      await eventually(
        async () => statusOf(await get(base64(second))) === 200,
        'the rotated key to open the route',
        10_000,
      );
      await checkAdmin(adminPort, [first, second]);
      assert.equal(await router.stop(), 0);
      checkLogs(router, [first, second], 3);
    });
  });
}

/** The nginx backend on a manifest: the key is in the nginx.conf nginx reads, and only there. */
function nginxWithJsonLogs(): void {
  describe('k8s-router run --backend nginx --manifest, JSON logs at debug level', () => {
    const secret = 'Narwhal-Nginx-Plain-64';
    let dir: string;
    let router: RouterProcess;

    before(async () => {
      dir = await workDir('k8s-router-secrets-nginx-');
      const manifest = join(dir, 'objects.yaml');
      const pod = { name: 'locked-0', ip: '127.0.105.21', port: 8080 } as TestPod;
      await writeFile(
        `${manifest}.tmp`,
        manifestText([
          podFor(pod, { namespace: 'locked', hosts: 'locked.test', paths: ['/'] }),
          apiKeySecret('locked', secret),
        ]),
      );
      await rename(`${manifest}.tmp`, manifest);
      router = await startRouterProcess(['--backend', 'nginx', '--manifest', manifest], {
        PORT: String(await pickFreeLoopbackPort()),
        LISTEN_ADDRESS: '127.0.0.1',
        NGINX_PREFIX: join(dir, 'nginx'),
      });
    });

    after(async () => {
      await router?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it('keeps the key in the nginx.conf nginx reads, and shows it nowhere else', async () => {
      const confFile = await readFile(join(dir, 'nginx', 'nginx.conf'), 'utf8');
      assert.ok(confFile.includes(base64(secret)), 'nginx itself gets the key');
      const bodies = await checkAdmin(adminPortOf(router), [secret]);
      assert.match(bodies['/nginx.conf'] as string, /^daemon off;$/m);
      assert.equal(await router.stop(), 0);
      checkLogs(router, [secret], 1);
    });
  });
}

describe('no Secret value in any log line or admin answer', { concurrency: 1 }, () => {
  demoWithPrettyLogs();
  clusterWithJsonLogs();
  nginxWithJsonLogs();
});
