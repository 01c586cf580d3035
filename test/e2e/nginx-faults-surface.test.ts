import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { manifestText } from '../support/manifests.js';
import { pod as podObject } from '../support/objects.js';
import { startRouterProcess, type RouterProcess } from '../support/router-process.js';

// nginx fails large requests through its temporary files: a request body over 16 KB and
// a response larger than its buffers go to disk under the prefix. Run as root with a
// prefix of mode 0700 (which the router accepts: it must belong to the router's user and
// not be writable by others), nginx's workers (nobody) could not reach those files: a
// large POST got 500, and 20 MB downloads came back 200 and cut short, with only a [crit]
// line in nginx's error log. Now the router lets the workers through (or refuses to start
// with the reason), and every crit/alert/emerg line reaches its log, a counter and /status.

const POD_IP = '127.0.0.171';
const DOWNLOAD_BYTES = 20 * 1024 * 1024;
const BODY_BYTES = 900 * 1024;

/** The same 20 MB every time: a pattern that is not all one byte. */
function downloadBody(): Buffer {
  const buffer = Buffer.alloc(DOWNLOAD_BYTES);
  for (let i = 0; i < buffer.length; i++) buffer[i] = (i * 7 + (i >> 12)) & 0xff;
  return buffer;
}

const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

interface Answer {
  status: number;
  body: Buffer;
  /** Whether the response ended normally (all of Content-Length, or the last chunk). */
  complete: boolean;
}

/**
 * One request. With `holdMs`, the answer is not read for that long: nginx then has more of
 * it than its memory buffers and the client's socket take, and must spill to its temporary
 * file (a client that reads at once may take a 20 MB answer from memory alone).
 */
function send(port: number, method: string, path: string, body?: Buffer, holdMs = 0): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        headers: { host: 'faults.test', ...(body ? { 'content-length': body.length } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        if (holdMs > 0) {
          res.pause();
          setTimeout(() => res.resume(), holdMs);
        }
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), complete: res.complete }),
        );
        res.on('error', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), complete: false }));
        res.on('aborted', () => undefined);
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

async function adminGet(port: number, path: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return res.text();
}

/** The router's ports and prefix, for the checks that run against it. */
interface FaultsRun {
  port: number;
  adminPort: number;
  prefix: string;
  router: RouterProcess;
}

/** The pod: `download` for GET /download; for anything else, the size and hash of the body it received. */
function podServing(download: Buffer): Server {
  return createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/download') {
        res.writeHead(200, { 'content-length': download.length, 'content-type': 'application/octet-stream' });
        res.end(download);
      } else {
        const body = Buffer.concat(chunks);
        res.end(JSON.stringify({ bytes: body.length, sha: sha(body) }));
      }
    });
  });
}

async function largeBodiesGoThroughWhole({ port, adminPort }: FaultsRun, download: Buffer): Promise<void> {
  const body = Buffer.alloc(BODY_BYTES, 'k');
  for (let i = 0; i < 3; i++) {
    const answer = await send(port, 'POST', '/upload', body);
    assert.equal(answer.status, 200, `POST ${i}: ${answer.body.toString('utf8').slice(0, 200)}`);
    assert.deepEqual(JSON.parse(answer.body.toString('utf8')), { bytes: BODY_BYTES, sha: sha(body) });
  }
  for (let i = 0; i < 6; i++) {
    // Every other download is held, so that some go through nginx's temporary file.
    const answer = await send(port, 'GET', '/download', undefined, i % 2 === 0 ? 1_000 : 0);
    assert.equal(answer.status, 200);
    assert.equal(
      answer.body.length,
      DOWNLOAD_BYTES,
      `download ${i} came back with ${answer.body.length} of ${DOWNLOAD_BYTES} bytes`,
    );
    assert.equal(sha(answer.body), sha(download), `download ${i} differs`);
  }
  const status = JSON.parse(await adminGet(adminPort, '/status')) as {
    dataPlanes: Array<{ nginx?: { errors: Record<string, number> } }>;
  };
  assert.deepEqual(status.dataPlanes[0]?.nginx?.errors, { crit: 0, alert: 0, emerg: 0 });
}

async function unusableTempDirectoryIsTold({ port, adminPort, prefix, router }: FaultsRun): Promise<void> {
  const proxyTemp = join(prefix, 'temp', 'proxy');
  const mark = router.logs.length;
  await chmod(proxyTemp, 0o000);
  try {
    const answer = await send(port, 'GET', '/download', undefined, 1_000);
    // What nginx does then is nginx's (a short 200, here); what matters is that it is told.
    assert.ok(
      !answer.complete || answer.body.length < DOWNLOAD_BYTES || answer.status >= 500,
      `nginx served the download whole (${answer.status}, ${answer.body.length} bytes) ` +
        'although it could not write its temporary file',
    );
  } finally {
    await chmod(proxyTemp, 0o700);
  }
  const logged = await router.waitForLog(
    (l) => l.msg === 'nginx reported a fault in its error log',
    'the crit line in the router log',
    10_000,
    mark,
  );
  assert.equal(logged.level, 50, 'logged at error');
  assert.equal(logged.nginxLevel, 'crit');
  assert.match(String(logged.nginx), /Permission denied/);
  const metrics = await adminGet(adminPort, '/metrics');
  const crit = /^k8s_router_nginx_errors_total\{level="crit"\} (\d+)$/m.exec(metrics);
  assert.ok(
    crit !== null && Number(crit[1]) >= 1,
    `metrics:\n${metrics
      .split('\n')
      .filter((l) => l.includes('nginx_errors'))
      .join('\n')}`,
  );
  const status = JSON.parse(await adminGet(adminPort, '/status')) as {
    dataPlanes: Array<{
      nginx?: { errors: Record<string, number>; recentErrors: Array<{ level: string; message: string }> };
    }>;
  };
  const nginx = status.dataPlanes[0]?.nginx;
  assert.ok((nginx?.errors.crit ?? 0) >= 1, JSON.stringify(nginx?.errors));
  assert.match(nginx?.recentErrors.at(-1)?.message ?? '', /Permission denied/);
}

describe('nginx faults through its temporary files are never silent', { timeout: 240_000 }, () => {
  let dir: string;
  let prefix: string;
  let pod: Server;
  let router: RouterProcess;
  let port: number;
  let adminPort: number;
  const download = downloadBody();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'k8s-router-faults-'));
    // mkdtemp makes it 0700: the prefix of the report.
    prefix = await mkdtemp(join(tmpdir(), 'k8s-router-prefix-0700-'));
    assert.equal((await stat(prefix)).mode & 0o777, 0o700);
    pod = podServing(download);
    await new Promise<void>((resolve) => pod.listen(0, POD_IP, resolve));
    const podPort = (pod.address() as { port: number }).port;
    const manifest = join(dir, 'cluster.yaml');
    await writeFile(
      manifest,
      manifestText([
        podObject('faults-0', {
          namespace: 'faults',
          ip: POD_IP,
          ports: [podPort],
          hosts: 'faults.test',
          paths: `${podPort}:/`,
        }),
      ]),
    );
    port = await pickFreeLoopbackPort();
    router = await startRouterProcess(['--backend', 'nginx', '--manifest', manifest], {
      PORT: String(port),
      LISTEN_ADDRESS: '127.0.0.1',
      NGINX_PREFIX: prefix,
    });
    adminPort = Number((router.logs.find((l) => l.msg === 'k8s-router is serving') as { adminPort: number }).adminPort);
  });

  after(async () => {
    await router?.stop();
    await new Promise<void>((resolve) => (pod ? pod.close(() => resolve()) : resolve()));
    await rm(dir, { recursive: true, force: true });
    await rm(prefix, { recursive: true, force: true });
  });

  it('large POSTs and 20 MB downloads go through whole with a prefix of mode 0700', () =>
    largeBodiesGoThroughWhole({ port, adminPort, prefix, router }, download));

  it("a temporary directory nginx cannot use shows in the router's log, its metrics and /status", () =>
    unusableTempDirectoryIsTold({ port, adminPort, prefix, router }));
});
