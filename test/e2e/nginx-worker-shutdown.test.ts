import assert from 'node:assert/strict';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type WebSocket from 'ws';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { delay, eventually } from '../support/eventually.js';
import { manifestText, podFor } from '../support/manifests.js';
import { metric, nginxStatus } from '../support/nginx-router.js';
import { endNginxOn } from '../support/nginx-wrapper.js';
import { startPods, type TestPod } from '../support/pods.js';
import { startRouterProcess, type RouterProcess } from '../support/router-process.js';
import { echo, openWebSocket } from '../support/websocket.js';
import { workDir } from '../support/work-dir.js';

// WORKER_SHUTDOWN_TIMEOUT_MS, documented nginx: a reload leaves the workers that hold
// WebSockets "shutting down" (counted in k8s_router_nginx_workers_shutting_down and
// /status). With the setting, nginx closes what they hold that long after the reload and
// they are gone; without it (as documented), they live as long as their WebSockets.

const RELOADS = 3;
const TIMEOUT_MS = 1_000;

interface Run {
  router: RouterProcess;
  sockets: Array<{ ws: WebSocket; closedAt: number | null }>;
  /** When the last change was written (before nginx was told to reload), and when the router said it served. */
  lastWriteAt: number;
  lastReloadAt: number;
}

async function openThenReload(
  name: string,
  firstIp: number,
  t: TestContext,
  env: Record<string, string>,
): Promise<Run> {
  const dir = await workDir(`k8s-router-e2e-${name}-`);
  const manifest = join(dir, 'cluster.yaml');
  const pods = await startPods(name, 2, firstIp);
  const prefix = join(dir, 'nginx');
  const port = await pickFreeLoopbackPort();
  const run: Partial<Run> = { sockets: [] };
  t.after(async () => {
    for (const s of run.sockets ?? []) s.ws.terminate();
    run.router?.kill('SIGKILL');
    await run.router?.exited;
    await endNginxOn(prefix);
    await Promise.all(pods.map((p) => p.close()));
    await rm(dir, { recursive: true, force: true });
  });
  const write = async (i: number): Promise<void> => {
    // The WebSockets' route stays; another route changes, and documented nginx reloads for it.
    const objects = [
      podFor(pods[0] as TestPod, { hosts: 'ws.test', paths: ['/'] }),
      podFor(pods[1] as TestPod, { hosts: `other-${i}.test`, paths: ['/'] }),
    ];
    await writeFile(`${manifest}.tmp`, manifestText(objects));
    await rename(`${manifest}.tmp`, manifest);
  };
  await write(0);
  const router = await startRouterProcess(['--backend', 'nginx', '--manifest', manifest], {
    PORT: String(port),
    LISTEN_ADDRESS: '127.0.0.1',
    NGINX_PREFIX: prefix,
    NGINX_MODE: 'documented',
    HOLD_OFF_MS: '20',
    MAX_DELAY_MS: '100',
    ...env,
  });
  run.router = router;
  let lastReloadAt = 0;
  let lastWriteAt = 0;
  for (let i = 1; i <= RELOADS; i++) {
    // Each reload leaves the WebSocket opened before it to the worker it was accepted by.
    const ws = await openWebSocket(port, 'ws.test');
    const socket = { ws, closedAt: null as number | null };
    ws.on('close', () => (socket.closedAt = Date.now()));
    run.sockets?.push(socket);
    assert.equal(await echo(ws, `before reload ${i}`), `${pods[0]?.name}:before reload ${i}`);
    const mark = router.logs.length;
    lastWriteAt = Date.now();
    await write(i);
    const served = await router.waitForLog((l) => l.msg === 'nginx serves the new config', `reload ${i}`, 15_000, mark);
    lastReloadAt = Number(served.time);
  }
  return { router, sockets: run.sockets ?? [], lastWriteAt, lastReloadAt };
}

/** The old workers, as the metric and /status count them (both sampled about once a second). */
async function shuttingDown(router: RouterProcess): Promise<{ metric: number; status: number }> {
  return {
    metric: await metric(router, 'k8s_router_nginx_workers_shutting_down'),
    status: Number((await nginxStatus(router)).workersShuttingDown),
  };
}

describe('old nginx workers after reloads, with WebSockets open', { concurrency: 2, timeout: 120_000 }, () => {
  it(
    `WORKER_SHUTDOWN_TIMEOUT_MS=${TIMEOUT_MS}: they are counted, then gone about a second after the reload, ` +
      'their WebSockets closed by nginx',
    async (t) => {
      const { router, sockets, lastWriteAt, lastReloadAt } = await openThenReload('wst-on', 248, t, {
        WORKER_SHUTDOWN_TIMEOUT_MS: String(TIMEOUT_MS),
      });
      // Sampled within the second the last reload's workers have left.
      const counted = await shuttingDown(router);
      assert.ok(counted.metric >= 1 && counted.status >= 1, `old workers counted: ${JSON.stringify(counted)}`);
      await eventually(async () => sockets.every((s) => s.closedAt !== null), 'nginx to close every WebSocket', 10_000);
      const after = sockets.map((s) => (s.closedAt as number) - lastReloadAt);
      // The last WebSocket's worker was told to stop after the last change was written: it
      // got the whole timeout from then (nginx's timers may fire a few ms early); none outlived it by much.
      const sinceWrite = (sockets.at(-1)?.closedAt as number) - lastWriteAt;
      t.diagnostic(
        `old workers counted ${JSON.stringify(counted)}; ` +
          `WebSockets closed ${after.join(', ')} ms after the last reload was served, ` +
          `the last ${sinceWrite} ms after its change was written`,
      );
      assert.ok(
        sinceWrite >= TIMEOUT_MS - 20,
        `the last reload's WebSocket was closed ${sinceWrite} ms after its change was written`,
      );
      assert.ok(
        Math.max(...after) < TIMEOUT_MS + 4_000,
        `a WebSocket outlived the timeout by seconds: ${after.join(', ')} ms`,
      );
      await eventually(
        async () => {
          const now = await shuttingDown(router);
          return now.metric === 0 && now.status === 0;
        },
        'no old worker to be counted',
        10_000,
      );
      assert.equal(await router.stop(), 0);
    },
  );

  it('without it (as documented), old workers live as long as their WebSockets, which keep echoing', async (t) => {
    const { router, sockets, lastReloadAt } = await openThenReload('wst-off', 249, t, {});
    const counted = await shuttingDown(router);
    assert.ok(counted.metric >= 1 && counted.status >= 1, `old workers counted: ${JSON.stringify(counted)}`);
    await delay(Math.max(0, lastReloadAt + TIMEOUT_MS + 2_000 - Date.now()));
    assert.deepEqual(
      sockets.map((s) => s.closedAt),
      sockets.map(() => null),
      'every WebSocket is open',
    );
    for (const [i, s] of sockets.entries()) assert.match(await echo(s.ws, `later ${i}`), new RegExp(`:later ${i}$`));
    const still = await shuttingDown(router);
    assert.ok(still.metric >= 1 && still.status >= 1, `old workers still counted: ${JSON.stringify(still)}`);
    for (const s of sockets) s.ws.close();
    await eventually(
      async () => {
        const now = await shuttingDown(router);
        return now.metric === 0 && now.status === 0;
      },
      'the old workers to go with their WebSockets',
      10_000,
    );
    t.diagnostic(
      `old workers counted ${JSON.stringify(counted)}, ` +
        `still ${JSON.stringify(still)} ${TIMEOUT_MS + 2_000} ms after the last reload`,
    );
    assert.equal(await router.stop(), 0);
  });
});
