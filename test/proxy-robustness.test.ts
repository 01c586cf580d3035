import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { startProxy, type ProxyDataPlane } from '../proxy/server.js';
import { startPod, type ReceivedRequest, type TestPod } from './support/pods.js';
import { tableOf } from './conformance/harness.js';
import { proxyLibraryUnderTest } from './support/proxy-library.js';

// Nothing a pod or a client does may take the router down: after each misbehaviour the
// proxy still answers the next requests. (An uncaught error would end this process and
// fail the run.)

let healthy: TestPod;
let resetter: TestPod;
let hanging: TestPod;
let wsResetter: TestPod;
let proxy: ProxyDataPlane;

before(async () => {
  healthy = await startPod('ok-0', '127.0.0.91');
  resetter = await startPod('reset-0', '127.0.0.92', { behaviour: 'reset-mid-response' });
  hanging = await startPod('hang-0', '127.0.0.93', { behaviour: 'hang' });
  wsResetter = await startPod('wsreset-0', '127.0.0.94', { behaviour: 'reset-mid-response' });
  proxy = await startProxy({
    port: 0,
    host: '127.0.0.1',
    apiKeyHeader: 'X-ROUTING-API-KEY',
    upstreamTimeoutMs: 300,
    ...proxyLibraryUnderTest(),
  });
  await proxy.apply(
    tableOf([
      { host: 'r.test', path: '/', pods: [healthy] },
      { host: 'r.test', path: '/reset', pods: [resetter] },
      { host: 'r.test', path: '/hang', pods: [hanging] },
      { host: 'r.test', path: '/ws-reset', pods: [wsResetter] },
    ]),
  );
});

after(async () => {
  await proxy?.close();
  await Promise.all([healthy, resetter, hanging, wsResetter].map((p) => p?.close()));
});

function get(path: string): Promise<{ status: number; body: string; complete: boolean }> {
  return new Promise((resolve) => {
    const req = http.get(
      { host: '127.0.0.1', port: proxy.port, path, headers: { Host: 'r.test' }, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, complete: res.complete }));
        res.on('error', () => resolve({ status: res.statusCode ?? 0, body, complete: false }));
        res.on('aborted', () => resolve({ status: res.statusCode ?? 0, body, complete: false }));
      },
    );
    req.on('error', () => resolve({ status: 0, body: '', complete: false }));
  });
}

async function stillServes(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const r = await get(`/after-${i}`);
    assert.equal(r.status, 200);
    assert.equal((JSON.parse(r.body) as ReceivedRequest).pod, 'ok-0');
  }
}

test('a pod that resets mid-response: the client gets a cut response, the router carries on', async () => {
  const r = await get('/reset');
  assert.equal(r.status, 200);
  assert.equal(r.complete, false);
  assert.ok(r.body.length < 100_000);
  await stillServes();
});

test('a WebSocket pod that resets: the client sees the close, the router carries on', async () => {
  const code = await new Promise<number>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/ws-reset`, { headers: { Host: 'r.test' } });
    ws.on('open', () => ws.send('boom'));
    ws.on('error', () => {});
    ws.on('close', (c) => resolve(c));
    ws.on('message', () => reject(new Error('the resetting pod answered')));
  });
  // 1006: closed without a close frame, i.e. the connection was cut.
  assert.equal(code, 1006);
  await stillServes();
});

test('a client that disconnects mid-upload does not disturb the router', async () => {
  for (let i = 0; i < 3; i++) {
    await new Promise<void>((resolve) => {
      const socket = net.connect(proxy.port, '127.0.0.1', () => {
        socket.write('POST /upload HTTP/1.1\r\nHost: r.test\r\nContent-Length: 100000\r\n\r\n');
        socket.write('x'.repeat(1000), () => setTimeout(() => socket.resetAndDestroy(), 20));
      });
      socket.on('error', () => {});
      socket.on('close', () => resolve());
    });
  }
  await stillServes();
});

test('a pod that never answers: 504 after the upstream timeout, and clients that give up meanwhile', async () => {
  const r = await get('/hang');
  assert.equal(r.status, 504);
  await new Promise<void>((resolve) => {
    const req = http.get({
      host: '127.0.0.1',
      port: proxy.port,
      path: '/hang',
      headers: { Host: 'r.test' },
      agent: false,
    });
    req.on('error', () => resolve());
    setTimeout(() => req.destroy(), 50);
  });
  await stillServes();
});

test('garbage on the client connection is answered or dropped, never fatal', async () => {
  for (const junk of [
    '\x00\x01\x02\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: r.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n',
    'NOT HTTP AT ALL\r\n\r\n',
  ]) {
    await new Promise<void>((resolve) => {
      const socket = net.connect(proxy.port, '127.0.0.1', () => socket.write(junk));
      socket.on('data', () => {});
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      setTimeout(() => socket.destroy(), 500);
    });
  }
  await stillServes();
});
