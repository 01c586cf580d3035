import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { startProxy, type ProxyDataPlane } from '../proxy/server.js';
import { deadAddress, startPod, type TestPod } from './support/pods.js';
import { tableOf } from './conformance/harness.js';
import { proxyLibraryUnderTest } from './support/proxy-library.js';

// Forwarding through the proxy library where its defaults differ from nginx: the exact
// head a pod receives, upgrades retried on another pod and not limited to WebSocket, and
// no listener build-up when one request tries many pods.

/** A pod that records the raw bytes of each request head and answers 200. */
async function startRawPod(
  ip: string,
): Promise<{ name: string; ip: string; port: number; heads: string[]; close(): Promise<void> }> {
  const heads: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = '';
    socket.on('data', (data) => {
      buffered += data.toString('latin1');
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      heads.push(buffered.slice(0, end + 4));
      buffered = '';
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, ip, () => resolve()));
  return {
    name: 'raw-0',
    ip,
    port: (server.address() as AddressInfo).port,
    heads,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let raw: Awaited<ReturnType<typeof startRawPod>>;
let echo: TestPod;
let proxy: ProxyDataPlane;
const warnings: Error[] = [];
const onWarning = (w: Error): void => {
  warnings.push(w);
};

before(async () => {
  raw = await startRawPod('127.0.0.101');
  echo = await startPod('echo-0', '127.0.0.102');
  const dead = await Promise.all(
    Array.from({ length: 12 }, async (_, i) => ({
      name: `dead-${String(i).padStart(2, '0')}`,
      ...(await deadAddress('127.0.0.103')),
    })),
  );
  proxy = await startProxy({
    port: 0,
    host: '127.0.0.1',
    apiKeyHeader: 'X-ROUTING-API-KEY',
    ...proxyLibraryUnderTest(),
  });
  await proxy.apply(
    tableOf([
      { host: 'raw.test', path: '/', pods: [raw] },
      { host: 'echo.test', path: '/', pods: [echo] },
      // "dead-*" sorts before "echo-0": the first try is refused, the second answers.
      { host: 'retry.test', path: '/', pods: [dead[0]!, echo] },
      { host: 'dead.test', path: '/', pods: dead },
    ]),
  );
  process.on('warning', onWarning);
});

after(async () => {
  process.off('warning', onWarning);
  await proxy?.close();
  await Promise.all([raw?.close(), echo?.close()]);
});

/** One raw request; the answer once its Content-Length body is in, or once the proxy closes. */
function exchange(request: string): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const socket = net.connect(proxy.port, '127.0.0.1', () => socket.write(request));
    socket.on('data', (d) => {
      got += d.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: *(\d+)\r\n/i.exec(got.slice(0, end + 2));
      if (end >= 0 && length !== null && got.length - end - 4 >= Number(length[1])) socket.destroy();
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve(got));
  });
}

test('the pod receives the request line and header lines exactly as nginx sends them', async () => {
  raw.heads.length = 0;
  await exchange('GET /a? HTTP/1.1\r\nHost: raw.test\r\nConnection: close\r\n\r\n');
  await exchange('GET /a/../b//c?x=%2e%2e HTTP/1.1\r\nHost: raw.test\r\nConnection: close\r\n\r\n');
  await exchange(
    'GET /m HTTP/1.1\r\nHost: raw.test\r\nX-Multi: a\r\nCookie: c=1\r\nx-multi: b\r\nX_Under: ' +
      '1\r\nConnection: close\r\n\r\n',
  );
  await exchange('DELETE /d HTTP/1.1\r\nHost: raw.test\r\nConnection: close\r\n\r\n');
  assert.deepStrictEqual(raw.heads, [
    'GET /a? HTTP/1.1\r\nHost: raw.test\r\nConnection: close\r\n\r\n',
    'GET /a/../b//c?x=%2e%2e HTTP/1.1\r\nHost: raw.test\r\nConnection: close\r\n\r\n',
    'GET /m HTTP/1.1\r\nHost: raw.test\r\nConnection: close\r\nX-Multi: a\r\nCookie: c=1\r\nx-multi: b\r\n\r\n',
    // The proxy libraries would add "content-length: 0" to a DELETE; nginx adds nothing.
    'DELETE /d HTTP/1.1\r\nHost: raw.test\r\nConnection: close\r\n\r\n',
  ]);
});

function echoOnce(host: string, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/chat`, { headers: { Host: host } });
    ws.on('error', reject);
    ws.on('unexpected-response', (_req, res) => reject(new Error(`refused ${res.statusCode}`)));
    ws.on('open', () => ws.send(message));
    ws.on('message', (data) => {
      ws.close();
      resolve((data as Buffer).toString());
    });
  });
}

test('a WebSocket tunnel carries frames both ways, and the close handshake, until the client closes it', async () => {
  const switched = proxy.stats().requests['1xx'];
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/chat`, { headers: { Host: 'echo.test' } });
  const replies: string[] = [];
  const closed = new Promise<number>((resolve, reject) => {
    ws.on('open', () => {
      ws.send('one');
      ws.send('two');
    });
    ws.on('message', (data) => {
      replies.push((data as Buffer).toString());
      if (replies.length === 2) ws.close(4001);
    });
    ws.on('close', (code) => resolve(code));
    ws.on('error', reject);
  });
  // The pod's echo of the close frame came back through the tunnel with the client's code.
  assert.equal(await closed, 4001);
  assert.deepStrictEqual(replies, ['echo-0:one', 'echo-0:two']);
  // The 101 counts as the request's answer.
  assert.equal(proxy.stats().requests['1xx'], switched + 1);
});

test('an upgrade refused by one pod is retried on the next, on the same client connection', async () => {
  assert.equal(await echoOnce('retry.test', 'hi'), 'echo-0:hi');
});

test('an upgrade that is not a WebSocket GET still reaches the pod, as with nginx', async () => {
  raw.heads.length = 0;
  const answer = await exchange('POST /up HTTP/1.1\r\nHost: raw.test\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n');
  assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/);
  assert.deepStrictEqual(raw.heads, [
    'POST /up HTTP/1.1\r\nHost: raw.test\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n',
  ]);
});

test('a request Node cannot send upstream is a 502 that leaves the pods usable', async () => {
  // Node refuses a Trailer header on a request it does not chunk.
  const refused = await exchange('GET /t HTTP/1.1\r\nHost: retry.test\r\nTrailer: x\r\nConnection: close\r\n\r\n');
  assert.match(refused, /^HTTP\/1\.1 502 /);
  const next = await exchange('GET /t HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n');
  assert.match(next, /^HTTP\/1\.1 200 OK\r\n(.+\r\n)*X-Pod: echo-0\r\n/);
});

test('trying many pods, and many requests on one connection, add no listeners that pile up', async () => {
  warnings.length = 0;
  const refused = await exchange('GET / HTTP/1.1\r\nHost: dead.test\r\nConnection: close\r\n\r\n');
  assert.match(refused, /^HTTP\/1\.1 502 /);
  const upgrade = await exchange(
    'GET / HTTP/1.1\r\nHost: dead.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
  );
  assert.match(upgrade, /^HTTP\/1\.1 502 /);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 25; i++) {
      await new Promise<void>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: proxy.port, path: `/${i}`, headers: { Host: 'echo.test' }, agent }, (res) => {
            res.resume();
            res.on('end', () => resolve());
          })
          .on('error', reject);
      });
    }
  } finally {
    agent.destroy();
  }
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepStrictEqual(
    warnings.map((w) => w.name),
    [],
  );
});
