import assert from 'node:assert/strict';
import { rename, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Server } from 'socket.io';
import type { io as ioType, Socket } from 'socket.io-client';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { crc32Long, findChashPoint, initChashPoints } from '../../proxy/consistent-hash.js';
import { podTarget } from '../../src/core/pod-target.js';
import { manifestText } from '../support/manifests.js';
import { pod as podObject } from '../support/objects.js';
import { startRouterProcess, type RouterProcess } from '../support/router-process.js';
import { workDir } from '../support/work-dir.js';

// Issue 17, the Go router's own socket.io walkthrough at three replicas: `k8s-router run
// --manifest` on each data plane, three socket.io pods (answering the 'env' event, as the
// walkthrough's nodejs-k8s-env app does, with their pod name), and clients running the
// walkthrough's code, require('socket.io-client')('http://test.k8s.local', {path:
// '/nodejs/socket.io'}), with the default transports: long polling first, then the upgrade
// to WebSocket. Each client has its own source address (127.64.x.y) and reaches the router
// through an http.Agent that resolves test.k8s.local to it.
//
// With routingAffinity: ip every client connects, gets its answer from the pod its address
// hashes to, and upgrades. Without it, round robin sends a client's handshake and its next
// request to different pods, and none connects: "Session ID unknown". That is why affinity
// exists; `transports: ['websocket']` (one connection, no polling) works without it.

const requireFromHere = createRequire(import.meta.url);
const connectSocketIo = requireFromHere('socket.io-client') as typeof ioType;

/** Each data plane `run` can serve; another entry (a further nginx mode) gets the same tests. */
const BACKENDS: readonly { name: string; args: string[]; env: Record<string, string> }[] = [
  { name: 'proxy', args: ['--backend', 'proxy'], env: {} },
  { name: 'nginx', args: ['--backend', 'nginx'], env: {} },
  { name: 'dynamic nginx', args: ['--backend', 'nginx', '--nginx-mode', 'dynamic'], env: {} },
];

const CLIENTS = 20;
const PATH = '/nodejs/socket.io';

interface SocketIoPod {
  name: string;
  ip: string;
  port: number;
  close(): Promise<void>;
}

/** A socket.io server that answers 'env' with its pod name, as the walkthrough's app answers with its environment. */
async function startSocketIoPod(name: string, ip: string): Promise<SocketIoPod> {
  const server = http.createServer();
  const io = new Server(server, { path: PATH });
  io.on('connection', (socket) => socket.on('env', () => socket.emit('env', { POD_NAME: name })));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, ip, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    name,
    ip,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        void io.close(() => resolve());
      }),
  };
}

type Outcome =
  | { connected: true; pod: string; transport: string }
  | { connected: false; error: string; status: unknown; body: string };

/** The walkthrough's client from `localAddress`: connect, emit 'env', take the answer and the upgrade. */
function runClient(routerPort: number, localAddress: string, extra: { transports?: string[] } = {}): Promise<Outcome> {
  const agent = new http.Agent({
    keepAlive: true,
    localAddress,
    // test.k8s.local is the router, as DNS would have it.
    lookup: ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
      if (options.all === true) callback(null, [{ address: '127.0.0.1', family: 4 }]);
      else callback(null, '127.0.0.1', 4);
    }) as never,
  });
  const socket: Socket = connectSocketIo(`http://test.k8s.local:${routerPort}`, {
    path: PATH,
    agent: agent as never,
    ...extra,
  });
  return new Promise<Outcome>((resolve) => {
    let answer: string | null = null;
    let upgraded = (extra.transports ?? []).includes('websocket') && extra.transports?.length === 1;
    const timer = setTimeout(
      () =>
        finish({
          connected: false,
          error: `no answer and upgrade within 10 s (answer ${answer}, upgraded ${upgraded})`,
          status: null,
          body: '',
        }),
      10_000,
    );
    const finish = (outcome: Outcome): void => {
      clearTimeout(timer);
      socket.disconnect();
      agent.destroy();
      resolve(outcome);
    };
    const check = (): void => {
      if (answer !== null && upgraded)
        finish({ connected: true, pod: answer, transport: socket.io.engine.transport.name });
    };
    socket.on('env', (env: { POD_NAME: string }) => {
      answer = env.POD_NAME;
      check();
    });
    socket.on('connect', () => {
      socket.io.engine.once('upgrade', () => {
        upgraded = true;
        check();
      });
      if (socket.io.engine.transport.name === 'websocket') upgraded = true;
      check();
    });
    // Emitted before the connection, as the walkthrough does: socket.io buffers it.
    socket.emit('env');
    socket.on('connect_error', (err: Error & { description?: unknown; context?: { responseText?: string } }) => {
      finish({
        connected: false,
        error: err.message,
        status: err.description,
        body: String(err.context?.responseText ?? ''),
      });
    });
  });
}

/** The source address of client `i`. */
const clientAddress = (i: number): string => `127.64.${Math.floor(i / 200)}.${1 + (i % 200)}`;

/** The three pods of a walkthrough, the router's port, and how to serve them with an affinity (none when null). */
interface Walkthrough {
  port: number;
  pods: SocketIoPod[];
  serve: (affinity: string | null) => Promise<void>;
}

async function clientsReachTheirAddressPod({ port, pods }: Walkthrough): Promise<void> {
  const outcomes = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => runClient(port, clientAddress(i))));
  const points = initChashPoints(pods.map((p) => podTarget(p.ip, p.port)));
  const expected = Array.from({ length: CLIENTS }, (_, i) => {
    const at = findChashPoint(points, crc32Long(clientAddress(i)));
    const target = points.servers[points.server[at % points.number] as number];
    return {
      connected: true,
      pod: pods.find((p) => podTarget(p.ip, p.port) === target)?.name,
      transport: 'websocket',
    };
  });
  assert.deepEqual(outcomes, expected);
  assert.ok(new Set(expected.map((e) => e.pod)).size >= 2, 'the clients are spread over the pods');
}

async function pollingClientsLoseTheirSession({ port, serve }: Walkthrough): Promise<void> {
  await serve(null);
  const outcomes: Outcome[] = [];
  // One after another, as the issue ran them.
  for (let i = 0; i < CLIENTS; i++) outcomes.push(await runClient(port, clientAddress(i)));
  const connected = outcomes.filter((o) => o.connected).length;
  assert.equal(connected, 0, JSON.stringify(outcomes.filter((o) => o.connected)));
  for (const o of outcomes) {
    assert.ok(!o.connected);
    assert.match(o.error, /^xhr (post|poll) error$/);
    assert.equal(o.status, 400);
    assert.match(o.body, /Session ID unknown/);
  }
}

async function webSocketOnlyClientsConnect({ port, serve }: Walkthrough): Promise<void> {
  await serve(null);
  const outcomes = await Promise.all(
    Array.from({ length: CLIENTS }, (_, i) => runClient(port, clientAddress(i), { transports: ['websocket'] })),
  );
  assert.deepEqual(
    outcomes.filter((o) => !o.connected),
    [],
  );
  assert.ok(outcomes.every((o) => o.connected && o.transport === 'websocket'));
}

for (const backend of BACKENDS) {
  describe(`the socket.io walkthrough at three pods, k8s-router run --backend ${backend.name}`, () => {
    let dir: string;
    let manifest: string;
    let pods: SocketIoPod[] = [];
    let router: RouterProcess;
    let port: number;

    let served: string | null | undefined;
    /** Serves the three pods with `affinity` (none when null), waiting for the table if it changes. */
    const serve = async (affinity: string | null): Promise<void> => {
      if (affinity === served) return;
      served = affinity;
      const objects = pods.map((p) =>
        podObject(p.name, {
          ip: p.ip,
          ports: [p.port],
          hosts: 'test.k8s.local',
          paths: `${p.port}:/nodejs`,
          ...(affinity === null ? {} : { annotations: { routingAffinity: affinity } }),
        }),
      );
      const mark = router?.logs.length ?? 0;
      await writeFile(`${manifest}.tmp`, manifestText(objects));
      await rename(`${manifest}.tmp`, manifest);
      if (router !== undefined)
        await router.waitForLog((l) => l.msg === 'route table served', 'the new table to be served', 15_000, mark);
    };

    before(async () => {
      dir = await workDir(`k8s-router-socket-io-${backend.name.replace(/ /g, '-')}-`);
      manifest = join(dir, 'cluster.yaml');
      pods = [];
      for (const [i, suffix] of ['eq7mh', 'oq9xn', 'yr1my'].entries())
        pods.push(await startSocketIoPod(`nodejs-k8s-env-${suffix}`, `127.0.0.${96 + i}`));
      port = await pickFreeLoopbackPort();
      await serve('ip');
      router = await startRouterProcess([...backend.args, '--manifest', manifest], {
        PORT: String(port),
        LISTEN_ADDRESS: '127.0.0.1',
        NGINX_PREFIX: join(dir, 'nginx'),
        HOLD_OFF_MS: '20',
        MAX_DELAY_MS: '100',
        ...backend.env,
      });
    });

    after(async () => {
      const exit = await router?.stop();
      await Promise.all(pods.map((p) => p.close()));
      await rm(dir, { recursive: true, force: true });
      assert.equal(exit, 0, 'the router exits 0 on SIGTERM');
    });

    const walkthrough = (): Walkthrough => ({ port, pods, serve });
    it(
      `with routingAffinity: ip, ${CLIENTS} of ${CLIENTS} clients connect, ` +
        "get their answer from their address's pod, and upgrade to WebSocket",
      () => clientsReachTheirAddressPod(walkthrough()),
    );
    it(
      `without the annotation (round robin), 0 of ${CLIENTS} clients connect: ` +
        'the poll after the handshake reaches another pod',
      () => pollingClientsLoseTheirSession(walkthrough()),
    );
    it(
      `without the annotation, ${CLIENTS} of ${CLIENTS} clients with transports: ['websocket'] connect ` +
        'and get their answer',
      () => webSocketOnlyClientsConnect(walkthrough()),
    );
  });
}
