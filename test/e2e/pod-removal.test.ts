import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { parseResponse, serializeRequest } from '../conformance/raw-http.js';
import { eventually } from '../support/eventually.js';
import { FakeApiServer } from '../support/fake-api-server.js';
import { LoadClient } from '../support/load-client.js';
import { podFor } from '../support/manifests.js';
import { STREAM_FIRST_CHUNK, STREAM_REST, startPods } from '../support/pods.js';
import { startRouterProcess } from '../support/router-process.js';
import { workDir } from '../support/work-dir.js';

// A pod removed from the cluster while it still serves a request: the router stops
// sending it new requests, and the request in flight finishes. With nginx the old worker
// that holds it keeps running until it is done (a graceful reload); the proxy keeps the
// route a request started with.

const HOST = 'leaving.test';

/** A request in flight on its own connection, and what has come back on it so far. */
interface HeldRequest {
  socket: net.Socket;
  received: () => Buffer;
}

/**
 * Round robin: requests on new connections until one is held by the pod that streams (its
 * first chunk came, the rest has not); null when six tries found none.
 */
async function requestHeldByStreamingPod(port: number): Promise<HeldRequest | null> {
  for (let i = 0; i < 6; i++) {
    const s = net.connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    s.on('data', (chunk: Buffer) => (data = Buffer.concat([data, chunk])));
    s.write(serializeRequest({ method: 'GET', target: '/download', headers: [['Host', HOST]] }));
    await eventually(
      () => data.includes(STREAM_FIRST_CHUNK) || parseResponse(data, false, false) !== null,
      'an answer to start',
    );
    if (data.includes(STREAM_FIRST_CHUNK) && !parseResponse(data, false, false)) {
      s.removeAllListeners('data');
      let received = data;
      s.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
      return { socket: s, received: () => received };
    }
    s.destroy();
  }
  return null;
}

describe('a pod removed while a request to it is in flight', { concurrency: 2, timeout: 120_000 }, () => {
  for (const [backend, firstIp] of [
    ['proxy', 151],
    ['nginx', 155],
  ] as const) {
    it(`--backend ${backend}: the request finishes, new requests go to the other pod`, async (t) => {
      const dir = await workDir(`k8s-router-removal-${backend}-`);
      // Registered before anything starts: a router that fails to start must not leave the
      // pods and the fake API server holding the test process open.
      const cleanups: Array<() => Promise<unknown>> = [];
      t.after(async () => {
        for (const cleanup of cleanups.reverse()) await cleanup();
        await rm(dir, { recursive: true, force: true });
      });
      const api = await FakeApiServer.start();
      cleanups.push(() => api.close());
      const [leaving, staying] = await startPods(`removal-${backend}`, 2, firstIp);
      assert.ok(leaving !== undefined && staying !== undefined);
      cleanups.push(() => Promise.all([leaving.close(), staying.close()]));
      leaving.behaviour = 'stream';
      const port = await pickFreeLoopbackPort();
      for (const p of [leaving, staying]) api.upsert(podFor(p, { namespace: 'removal', hosts: HOST, paths: ['/'] }));
      const router = await startRouterProcess(['--backend', backend], {
        PORT: String(port),
        LISTEN_ADDRESS: '127.0.0.1',
        NGINX_PREFIX: join(dir, 'nginx'),
        KUBECONFIG: api.kubeConfigFile(),
        HOLD_OFF_MS: '20',
        MAX_DELAY_MS: '100',
      });
      cleanups.push(() => router.stop());

      const held = await requestHeldByStreamingPod(port);
      assert.ok(held !== null && leaving.streamsWaiting === 1, 'a request is in flight at the leaving pod');
      const { socket } = held;

      const mark = router.logs.length;
      api.remove('Pod', 'removal', leaving.name);
      await router.waitForLog(
        (l) => l.msg === 'route table served' && Number(l.routes) === 1,
        'the table without the pod to be served',
        10_000,
        mark,
      );
      const client = new LoadClient({ port, host: HOST }, { keepAlive: false, idPrefix: 'after' });
      for (let i = 0; i < 6; i++) {
        const { outcome } = await client.send();
        assert.deepEqual(
          outcome,
          { kind: 'response', status: 200, pod: staying.name },
          'new requests go to the pod that stays',
        );
      }
      assert.equal(leaving.streamsWaiting, 1, 'the request in flight is still held by the leaving pod');

      leaving.releaseStreams();
      // The connection may stay open (kept alive): the response is whole once its last chunk came.
      const response = await eventually(
        () => parseResponse(held.received(), false, false),
        'the rest of the response',
        5_000,
      );
      socket.destroy();
      assert.equal(response?.kind, 'response');
      assert.ok(response?.kind === 'response' && response.status === 200);
      assert.equal(response.body.toString('latin1'), STREAM_FIRST_CHUNK + STREAM_REST, 'the whole response arrived');
      t.diagnostic(
        `${backend}: the request in flight finished after the pod was removed; 6 new requests went to ${staying.name}`,
      );
    });
  }
});
