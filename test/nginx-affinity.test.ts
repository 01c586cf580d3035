import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Route, RouteTable } from '../src/core/route-table.js';
import { spawnNginxMaster, type NginxMaster } from '../nginx/master.js';
import { target } from '../nginx/render.js';
import { pickFreeLoopbackPort } from '../nginx/status.js';
import { eventually } from './support/eventually.js';
import { startDynamicNginx, type DynamicNginx } from './support/dynamic-nginx.js';
import { NGINX_BINARY } from './support/nginx-check.js';
import { deadAddress, startPod, type TestPod } from './support/pods.js';
import { seededRandom } from './support/seeded-random.js';

// Session affinity (`ip`) in dynamic nginx against nginx's own `hash $remote_addr
// consistent;`: a hand-made upstream block of the same pods, in a real nginx, with the
// realip module taking the client address from a header, so that thousands of generated
// IPv4 and IPv6 addresses reach both. Every address must reach the same pod through both,
// also when pods are down and the walk round the ring moves on.

const CLIENT_HEADER = 'X-Client-Address';
const REALIP = ['set_real_ip_from 127.0.0.0/8;', `real_ip_header ${CLIENT_HEADER};`];

interface PodAddress {
  name: string;
  ip: string;
  port: number;
}

/** The documented config's upstream for these pods, with the hash affinity writes. */
async function startHashNginx(
  backends: readonly PodAddress[],
): Promise<{ port: number; master: NginxMaster; close(): Promise<void> }> {
  const prefix = await mkdtemp(join(tmpdir(), 'k8s-router-chash-'));
  await mkdir(join(prefix, 'logs'));
  const port = await pickFreeLoopbackPort();
  const conf = [
    'daemon off;',
    `pid ${prefix}/nginx.pid;`,
    `error_log ${prefix}/logs/error.log;`,
    'events {}',
    'http {',
    'access_log off;',
    `client_body_temp_path ${prefix}/temp;`,
    `proxy_temp_path ${prefix}/temp;`,
    ...REALIP,
    'upstream sticky {',
    'hash $remote_addr consistent;',
    ...backends.map((b) => `server ${target(b.ip, b.port)};`),
    '}',
    'server {',
    `listen 127.0.0.1:${port};`,
    'location / {',
    'proxy_pass http://sticky;',
    '}',
    // Asking whether nginx is up must not go through the upstream: a pick changes its state.
    'location = /ready {',
    'return 204;',
    '}',
    '}',
    '}',
    '',
  ].join('\n');
  await writeFile(join(prefix, 'nginx.conf'), conf);
  const master = spawnNginxMaster({
    nginxBinary: NGINX_BINARY,
    prefix,
    confPath: join(prefix, 'nginx.conf'),
    errorLog: join(prefix, 'logs', 'error.log'),
  });
  await eventually(async () => (await ready(port)) === 204, 'the hash upstream to answer', 10_000);
  return {
    port,
    master,
    close: async () => {
      await master.stop({ gracefulMs: 5_000, fastMs: 2_000 });
      await rm(prefix, { recursive: true, force: true });
    },
  };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
after(() => agent.destroy());

function ready(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/ready', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? null);
    });
    req.on('error', () => resolve(null));
  });
}

/** The pod that answered a request from `client` (or the status nginx answered). */
function ask(port: number, client: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: '/', headers: { host: 'sticky.test', [CLIENT_HEADER]: client }, agent },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve(typeof res.headers['x-pod'] === 'string' ? res.headers['x-pod'] : String(res.statusCode)),
        );
      },
    );
    req.on('error', reject);
  });
}

function addresses(count: number, seed: number): string[] {
  const random = seededRandom(seed);
  const octet = (): number => Math.floor(random() * 256);
  const group = (): string => Math.floor(random() * 65536).toString(16);
  return Array.from({ length: count }, (_, i) => {
    if (i % 3 !== 2) return `${1 + Math.floor(random() * 223)}.${octet()}.${octet()}.${octet()}`;
    // Full, compressed and IPv4-mapped forms: nginx writes each back in its own canonical text.
    const kind = i % 9;
    if (kind === 2) return Array.from({ length: 8 }, group).join(':');
    if (kind === 5) return `2001:db8::${group()}:${group()}`;
    return `::ffff:${octet()}.${octet()}.${octet()}.${octet()}`;
  });
}

function stickyTable(backends: readonly PodAddress[]): RouteTable {
  const route = {
    host: 'sticky.test',
    path: '/',
    namespace: 'default',
    apiKey: null,
    backends: [...backends]
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .map((b) => ({ pod: b.name, namespace: 'default', ip: b.ip, port: b.port })),
    affinity: 'ip',
  } as Route;
  return { routes: [route], rejections: [] };
}

/** What each address got, asked `parallel` at a time (1: in order, when failures change the state). */
async function answers(port: number, clients: readonly string[], parallel: number): Promise<string[]> {
  const out: string[] = new Array(clients.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < clients.length) {
        const i = next++;
        out[i] = await ask(port, clients[i] as string);
      }
    }),
  );
  return out;
}

let pods: TestPod[] = [];

async function compare(
  backends: readonly PodAddress[],
  clients: readonly string[],
  parallel: number,
): Promise<string[]> {
  // In pod-name order, as the route table and the documented upstream list them.
  const sorted = [...backends].sort((a, b) => (a.name < b.name ? -1 : 1));
  const documented = await startHashNginx(sorted);
  let dynamic: DynamicNginx | null = null;
  try {
    dynamic = await startDynamicNginx(stickyTable(sorted), { httpDirectives: REALIP });
    const viaHash = await answers(documented.port, clients, parallel);
    const viaDynamic = await answers(dynamic.port, clients, parallel);
    const differing = clients.flatMap((c, i) =>
      viaHash[i] === viaDynamic[i] ? [] : [`${c}: nginx ${viaHash[i]}, dynamic ${viaDynamic[i]}`],
    );
    assert.deepEqual(differing, [], `${differing.length} of ${clients.length} addresses differ`);
    return viaHash;
  } finally {
    await Promise.all([documented.close(), dynamic?.close()]);
  }
}

describe("affinity ip: dynamic nginx picks the pod nginx's consistent hash picks", { timeout: 180_000 }, () => {
  before(async () => {
    pods = [
      ...(await Promise.all([0, 1, 2, 3, 4].map((i) => startPod(`sticky-${i}`, `127.0.0.${110 + i}`)))),
      // Port 80 is left out of the server text; IPv6 goes in brackets.
      await startPod('sticky-5', '127.0.0.115', { port: 80 }),
      await startPod('sticky-6', '::1'),
      await startPod('sticky-7', '::1'),
    ];
  });
  after(() => Promise.all(pods.map((p) => p.close())));

  it('3000 IPv4 and IPv6 addresses, 8 pods on IPv4, IPv6 and port 80', async () => {
    const clients = addresses(3000, 20261206);
    const got = await compare(pods, clients, 8);
    // Every pod gets a share: the ring is used, not one pod.
    for (const p of pods)
      assert.ok(
        got.filter((g) => g === p.name).length > 100,
        `${p.name} gets clients: ${got.filter((g) => g === p.name).length}`,
      );
    // The same address twice, the same pod.
    assert.deepEqual(
      await compare(pods.slice(0, 3), [...clients.slice(0, 50), ...clients.slice(0, 50)], 1).then((g) =>
        g.slice(0, 50),
      ),
      await compare(pods.slice(0, 3), clients.slice(0, 50), 1),
    );
  });

  it('pods that refuse: the walk moves on round the ring, down pods skipped, 600 addresses in order', async () => {
    const dead = [
      { name: 'sticky-dead-0', ...(await deadAddress('127.0.0.120')) },
      { name: 'sticky-dead-1', ...(await deadAddress('127.0.0.121')) },
    ];
    const got = await compare([...pods.slice(0, 3), ...dead], addresses(600, 7), 1);
    assert.ok(
      !got.includes('502') && got.every((g) => g.startsWith('sticky-') && !g.includes('dead')),
      'every address reached a live pod',
    );
  });

  it('mostly pods that refuse: 20 points without a pod, then round robin, 400 addresses in order', async () => {
    const dead = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => ({
        name: `sticky-dead-${i + 10}`,
        ...(await deadAddress(`127.0.0.${122 + i}`)),
      })),
    );
    const got = await compare([...pods.slice(0, 2), ...dead], addresses(400, 11), 1);
    assert.ok(
      got.every((g) => g === 'sticky-0' || g === 'sticky-1'),
      'every address reached a live pod',
    );
  });

  it('one pod: nginx does not hash, and neither does dynamic nginx', async () => {
    assert.deepEqual(new Set(await compare(pods.slice(0, 1), addresses(50, 3), 4)), new Set(['sticky-0']));
  });
});
