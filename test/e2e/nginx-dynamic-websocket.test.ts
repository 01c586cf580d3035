import assert from 'node:assert/strict';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { childrenOf } from '../../nginx/workers.js';
import { manifestText, podFor } from '../support/manifests.js';
import { metric } from '../support/nginx-router.js';
import { endNginxOn, nginxMasters } from '../support/nginx-wrapper.js';
import { startPods, type TestPod } from '../support/pods.js';
import { startRouterProcess } from '../support/router-process.js';
import { echo, openWebSocket } from '../support/websocket.js';
import { workDir } from '../support/work-dir.js';

// Dynamic nginx takes every route change as data: a WebSocket it carries stays open across
// 100 changes, those of its own route included, and nginx runs the same processes
// throughout (no reload, no new worker). Documented nginx would reload for each change and
// leave the WebSocket to an old worker that takes no new table.

const CHANGES = 100;

test(
  `a WebSocket through dynamic nginx stays open and echoes across ${CHANGES} route changes, ` +
    'with the same nginx processes',
  { timeout: 180_000 },
  async (t) => {
    const dir = await workDir('k8s-router-e2e-dynamic-ws-');
    const manifest = join(dir, 'cluster.yaml');
    // Pod 0 holds the WebSocket; 1 and 2 come and go on its route; 3 and 4 on other routes.
    const pods = await startPods('dynws', 5, 240);
    const [held, ...others] = pods as [TestPod, ...TestPod[]];
    const port = await pickFreeLoopbackPort();
    const prefix = join(dir, 'nginx');
    t.after(async () => {
      await endNginxOn(prefix);
      await Promise.all(pods.map((p) => p.close()));
      await rm(dir, { recursive: true, force: true });
    });

    /** Change `i`: the WebSocket's route with its pod and some of 1 and 2; other routes that change each time. */
    const tableText = (i: number): string => {
      const onRoute = [held, ...others.slice(0, 2).filter((_, k) => ((i >> k) & 1) === 1)];
      const elsewhere = others
        .slice(2)
        .map((p, k) => podFor(p, { hosts: `other-${(i + k) % 7}.test`, paths: [`/v${i % 5}`] }));
      return manifestText([...onRoute.map((p) => podFor(p, { hosts: 'ws.test', paths: ['/'] })), ...elsewhere]);
    };
    const write = async (text: string): Promise<void> => {
      await writeFile(`${manifest}.tmp`, text);
      await rename(`${manifest}.tmp`, manifest);
    };

    // The WebSocket's route starts with its pod alone, so that is the pod it connects to.
    await write(manifestText([podFor(held, { hosts: 'ws.test', paths: ['/'] })]));
    const router = await startRouterProcess(['--backend', 'nginx', '--manifest', manifest], {
      PORT: String(port),
      LISTEN_ADDRESS: '127.0.0.1',
      NGINX_PREFIX: prefix,
      NGINX_MODE: 'dynamic',
      WORKER_PROCESSES: '2',
      HOLD_OFF_MS: '20',
      MAX_DELAY_MS: '100',
    });
    const [master] = await nginxMasters(prefix);
    assert.ok(master !== undefined, 'nginx runs');
    const processes = async (): Promise<number[]> =>
      [master, ...(await childrenOf(master)).map((w) => w.pid)].sort((a, b) => a - b);
    const before = await processes();
    assert.equal(before.length, 3, `a master and two workers: ${before.join(' ')}`);

    const ws = await openWebSocket(port, 'ws.test');
    let closed: string | null = null;
    ws.on('close', (code, reason) => (closed = `${code} ${String(reason)}`));
    assert.equal(await echo(ws, 'hello'), `${held.name}:hello`);

    const startedAt = Date.now();
    const tablesServed = (): number => router.logs.filter((l) => l.msg === 'route table served').length;
    for (let i = 1; i <= CHANGES; i++) {
      const served = tablesServed();
      await write(tableText(i));
      await router.waitForLog(() => tablesServed() > served, `change ${i} to be served`, 15_000);
      assert.equal(await echo(ws, `after change ${i}`), `${held.name}:after change ${i}`, `the echo after change ${i}`);
    }
    const ms = Date.now() - startedAt;

    assert.equal(closed, null, 'the WebSocket is open');
    assert.deepEqual(await processes(), before, "nginx's master and workers are the same processes");
    assert.equal(await metric(router, 'k8s_router_nginx_reloads_total'), 0, 'no reload');
    assert.equal(await metric(router, 'k8s_router_nginx_workers_shutting_down'), 0, 'no old worker');
    t.diagnostic(`${CHANGES} changes in ${ms} ms (${Math.round(ms / CHANGES)} ms each)`);
    ws.close();
    assert.equal(await router.stop(), 0, 'the router exits 0 on SIGTERM');
  },
);
