import assert from 'node:assert/strict';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type WebSocket from 'ws';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { groupMembers } from '../../nginx/workers.js';
import { endNginxOn } from '../support/nginx-wrapper.js';
import { delay } from '../support/eventually.js';
import { runLoad, summarize, type RequestRecord } from '../support/load-client.js';
import { manifestText, podFor } from '../support/manifests.js';
import { startPods, type TestPod } from '../support/pods.js';
import { startRouterProcess, type RouterProcess } from '../support/router-process.js';
import { workDir } from '../support/work-dir.js';
import { echo, openWebSocket as openWs } from '../support/websocket.js';

// SIGTERM, as Kubernetes sends it before it stops a pod: the router stops accepting new
// connections, lets the requests and WebSockets it accepted finish within
// SHUTDOWN_GRACE_MS, stops nginx gracefully, and exits 0. Counted by the clients, byte
// for byte, and checked against what reached the pods.

const HOST = 'drain.test';
/** Each request takes this long at the pod, so many are in flight when SIGTERM comes. */
const POD_MS = 300;

interface Setup {
  router: RouterProcess;
  pods: TestPod[];
  port: number;
  dir: string;
}

async function start(backend: 'proxy' | 'nginx', firstIp: number, graceMs: number): Promise<Setup> {
  const dir = await workDir(`k8s-router-shutdown-${backend}-`);
  const pods = await startPods(`drain-${backend}`, 2, firstIp);
  for (const p of pods) Object.assign(p, { behaviour: 'slow', slowMs: POD_MS });
  const manifest = join(dir, 'cluster.yaml');
  await writeFile(
    `${manifest}.tmp`,
    manifestText(pods.map((p) => podFor(p, { namespace: 'drain', hosts: HOST, paths: ['/'] }))),
  );
  await rename(`${manifest}.tmp`, manifest);
  const port = await pickFreeLoopbackPort();
  try {
    const router = await startRouterProcess(['--backend', backend, '--manifest', manifest], {
      PORT: String(port),
      LISTEN_ADDRESS: '127.0.0.1',
      NGINX_PREFIX: join(dir, 'nginx'),
      SHUTDOWN_GRACE_MS: String(graceMs),
      LOG_LEVEL: 'info',
    });
    return { router, pods, port, dir };
  } catch (err) {
    // A router that did not start must not leave the pods holding the test process open.
    await Promise.all(pods.map((p) => p.close()));
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function cleanUp(setup: Setup): Promise<void> {
  setup.router.kill('SIGKILL');
  await setup.router.exited;
  await endNginxOn(join(setup.dir, 'nginx'));
  await Promise.all(setup.pods.map((p) => p.close()));
  await rm(setup.dir, { recursive: true, force: true });
}

const openWebSocket = (port: number): Promise<WebSocket> => openWs(port, HOST);

/** Tries new connections every few ms: when the first was refused, and whether one was accepted after that. */
function probeConnections(
  port: number,
  running: () => boolean,
): Promise<{ firstRefusedAt: number | null; acceptedAfterRefusal: number }> {
  return (async () => {
    let firstRefusedAt: number | null = null;
    let acceptedAfterRefusal = 0;
    while (running()) {
      const accepted = await new Promise<boolean>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
      });
      if (!accepted) firstRefusedAt ??= Date.now();
      else if (firstRefusedAt !== null) acceptedAfterRefusal++;
      await delay(10);
    }
    return { firstRefusedAt, acceptedAfterRefusal };
  })();
}

/** The ids of the requests that reached a pod (the router had accepted them). */
function reachedPods(pods: TestPod[]): Set<string> {
  const ids = new Set<string>();
  for (const p of pods) {
    for (const r of p.received) {
      const id = r.headers.find(([k]) => k.toLowerCase() === 'x-request-id')?.[1];
      if (id !== undefined) ids.add(id);
    }
  }
  return ids;
}

async function nginxMasterPid(dir: string): Promise<number> {
  return Number((await readFile(join(dir, 'nginx', 'nginx.pid'), 'utf8')).trim());
}

/** What a SIGTERM under load saw: the requests, the WebSocket's answers, the probe of new connections, the exit. */
interface DrainRun {
  records: RequestRecord[];
  before: string;
  after: string;
  exit: number | NodeJS.Signals;
  termAt: number;
  exitAt: number;
  wsClosedAt: number;
  firstRefusedAt: number | null;
  acceptedAfterRefusal: number;
}

/** Sends load and holds a WebSocket open, sends SIGTERM, and records everything until the router exits. */
async function sigtermUnderLoad(setup: Setup): Promise<DrainRun> {
  const { router, port } = setup;
  const ws = await openWebSocket(port);
  const before = await echo(ws, 'before');

  let loading = true;
  let exited = false;
  const target = { port, host: HOST };
  const load = Promise.all([
    runLoad(target, 6, { keepAlive: false, idPrefix: 'fresh' }, () => loading),
    runLoad(target, 4, { keepAlive: true, idPrefix: 'kept' }, () => loading),
  ]);
  await delay(1_500);
  const termAt = Date.now();
  router.kill('SIGTERM');
  const probe = probeConnections(port, () => !exited);
  void router.exited.then(() => (exited = true));

  // The WebSocket open before SIGTERM still works within the grace, then ends normally.
  await router.waitForLog(
    (l) => String(l.msg).startsWith('stopping: no new connections'),
    'the router to start draining',
    5_000,
  );
  await delay(300);
  const after = await echo(ws, 'after');
  const wsClosedAt = Date.now();
  ws.close();
  await delay(200);
  loading = false;
  const exit = await router.exited;
  const exitAt = Date.now();
  const records: RequestRecord[] = (await load).flat();
  const { firstRefusedAt, acceptedAfterRefusal } = await probe;
  return { records, before, after, exit, termAt, exitAt, wsClosedAt, firstRefusedAt, acceptedAfterRefusal };
}

async function answersEveryAcceptedRequest(t: TestContext, backend: 'proxy' | 'nginx', firstIp: number): Promise<void> {
  const setup = await start(backend, firstIp, 10_000);
  t.after(() => cleanUp(setup));
  const master = backend === 'nginx' ? await nginxMasterPid(setup.dir) : null;
  const run = await sigtermUnderLoad(setup);
  const { records, before, after, exit, termAt, exitAt, wsClosedAt, firstRefusedAt, acceptedAfterRefusal } = run;

  const summary = summarize(records);
  const reached = reachedPods(setup.pods);
  const inFlightAtTerm = records.filter(
    (r) => r.sentAt < termAt && r.doneAt > termAt && r.outcome.kind === 'response',
  ).length;
  const refusal = firstRefusedAt === null ? 'never' : `${firstRefusedAt - termAt} ms`;
  t.diagnostic(
    `${summary.requests} requests: ${summary.ok} answered 2xx (${inFlightAtTerm} of them in flight at SIGTERM), ` +
      `${summary.refused} refused, ` +
      `${summary.droppedBeforeAnyByte} closed before any byte, ${summary.droppedMidResponse} cut mid-response, ` +
      `${summary.resent} resent; ` +
      `non-2xx ${JSON.stringify(summary.non2xx)}; first refusal ${refusal} after SIGTERM; ` +
      `exit ${exit} ${exitAt - termAt} ms after SIGTERM, ${exitAt - wsClosedAt} ms after the WebSocket closed`,
  );
  for (const sample of summary.samples) t.diagnostic(sample);

  assert.equal(exit, 0, 'exit status 0');
  assert.match(before, /^drain-.*:before$/);
  assert.match(after, /^drain-.*:after$/, 'the WebSocket opened before SIGTERM exchanged a message after it');
  // Every request the router accepted (it reached a pod) got its whole answer.
  const unanswered = records.filter(
    (r) => reached.has(r.id) && !(r.outcome.kind === 'response' && r.outcome.status === 200),
  );
  assert.deepEqual(unanswered, [], 'requests that reached a pod but got no answer');
  assert.deepEqual(summary.non2xx, {}, 'no answer other than 2xx');
  assert.equal(summary.droppedMidResponse, 0, 'no response cut short');
  // What failed was never accepted: no connection, or one closed before any byte.
  for (const r of records)
    if (r.outcome.kind !== 'response') assert.ok(!reached.has(r.id), `${r.id} reached a pod yet failed`);
  assert.ok(inFlightAtTerm > 0, 'requests were in flight when SIGTERM came');
  assert.ok(firstRefusedAt !== null, 'new connections were refused after SIGTERM');
  assert.equal(acceptedAfterRefusal, 0, 'no connection was accepted once they were refused');
  assert.ok(summary.refused > 0, 'clients saw refused connections');
  if (master !== null) {
    assert.throws(() => process.kill(master, 0), 'the nginx master is gone');
    assert.deepEqual(await groupMembers(master), [], 'no nginx worker is left');
  }
}

async function cutsAWebSocketOpenPastTheGrace(
  t: TestContext,
  backend: 'proxy' | 'nginx',
  firstIp: number,
): Promise<void> {
  const graceMs = 1_500;
  const setup = await start(backend, firstIp + 5, graceMs);
  t.after(() => cleanUp(setup));
  const { router, port } = setup;
  const ws = await openWebSocket(port);
  await echo(ws, 'hello');
  const closed = new Promise<number>((resolve) => ws.once('close', () => resolve(Date.now())));
  ws.on('error', () => {});
  const termAt = Date.now();
  router.kill('SIGTERM');
  const exit = await router.exited;
  const exitAt = Date.now();
  const closedAt = await closed;
  t.diagnostic(
    `WebSocket cut ${closedAt - termAt} ms after SIGTERM (grace ${graceMs} ms); ` +
      `exit ${exit} after ${exitAt - termAt} ms`,
  );
  assert.equal(exit, 0);
  assert.ok(
    closedAt - termAt >= graceMs - 50,
    `the WebSocket was cut after ${closedAt - termAt} ms, before the grace of ${graceMs} ms`,
  );
}

describe('k8s-router run stopped with SIGTERM', { concurrency: 2, timeout: 120_000 }, () => {
  for (const [backend, firstIp] of [
    ['proxy', 101],
    ['nginx', 111],
  ] as const) {
    it(
      `--backend ${backend}: under load, every request it accepted is answered, new connections are refused, ` +
        'a WebSocket finishes, exit 0',
      (t: TestContext) => answersEveryAcceptedRequest(t, backend, firstIp),
    );

    it(`--backend ${backend}: a WebSocket still open when the grace ends is cut, and the router exits 0`, (t) =>
      cutsAWebSocketOpenPastTheGrace(t, backend, firstIp));
  }
});
