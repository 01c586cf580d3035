import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { startProxy, type ProxyDataPlane } from '../proxy/server.js';
import {
  deadAddress,
  startPod,
  STREAM_FIRST_CHUNK,
  STREAM_REST,
  type ReceivedRequest,
  type TestPod,
} from './support/pods.js';
import { tableOf } from './conformance/harness.js';
import { proxyLibraryUnderTest } from './support/proxy-library.js';

// The proxy on its own: table swaps, keep-alive to pods, timeouts and streaming, the
// parts the nginx comparison cannot show or only shows slowly.

let pods: TestPod[] = [];
let proxy: ProxyDataPlane;

before(async () => {
  pods = [
    await startPod('srv-0', '127.0.0.81'),
    await startPod('srv-1', '127.0.0.82'),
    await startPod('srv-2', '127.0.0.83'),
  ];
  proxy = await startProxy({
    port: 0,
    host: '127.0.0.1',
    apiKeyHeader: 'X-ROUTING-API-KEY',
    upstreamTimeoutMs: 300,
    ...proxyLibraryUnderTest(),
  });
});

after(async () => {
  await proxy?.close();
  await Promise.all(pods.map((p) => p.close()));
});

function request(
  path: string,
  options: {
    host?: string;
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    agent?: http.Agent | false;
    port?: number;
  } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: options.port ?? proxy.port,
        path,
        method: options.method ?? 'GET',
        headers: { Host: options.host ?? 'srv.test', ...options.headers },
        agent: options.agent ?? false,
      },
      (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

async function podOf(path: string, options: Parameters<typeof request>[1] = {}): Promise<string> {
  const r = await request(path, options);
  assert.equal(r.status, 200, r.body);
  return (JSON.parse(r.body) as ReceivedRequest).pod;
}

test('apply swaps the table; an unchanged route keeps its round-robin position', async () => {
  const [a, b, c] = pods as [TestPod, TestPod, TestPod];
  await proxy.apply(tableOf([{ host: 'srv.test', path: '/', pods: [a, b] }]));
  assert.equal(await podOf('/'), 'srv-0');
  await proxy.apply(
    tableOf([
      { host: 'srv.test', path: '/', pods: [a, b] },
      { host: 'srv.test', path: '/c', pods: [c] },
    ]),
  );
  assert.equal(await podOf('/'), 'srv-1');
  assert.equal(await podOf('/c'), 'srv-2');
  // Other pods: a new rotation from the first one.
  await proxy.apply(tableOf([{ host: 'srv.test', path: '/', pods: [b, c] }]));
  assert.equal(await podOf('/'), 'srv-1');
  assert.equal(await podOf('/c'), 'srv-2'); // now under "/"
  assert.equal(await podOf('/'), 'srv-1');
});

test('a request in flight keeps the route it started with when the table changes', async () => {
  const streamer = await startPod('srv-stream', '127.0.0.84', { behaviour: 'stream' });
  try {
    await proxy.apply(tableOf([{ host: 'srv.test', path: '/', pods: [streamer] }]));
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get(
          { host: '127.0.0.1', port: proxy.port, path: '/s', headers: { Host: 'srv.test' }, agent: false },
          (res) => {
            let text = '';
            res.setEncoding('latin1');
            res.on('data', (chunk: string) => {
              text += chunk;
              if (text === STREAM_FIRST_CHUNK) {
                proxy
                  .apply(tableOf([{ host: 'srv.test', path: '/', pods: [pods[0] as TestPod] }]))
                  .then(async () => {
                    assert.equal(await podOf('/'), 'srv-0');
                    streamer.releaseStreams();
                  })
                  .catch(reject);
              }
            });
            res.on('end', () => resolve(text));
          },
        )
        .on('error', reject);
    });
    assert.equal(body, STREAM_FIRST_CHUNK + STREAM_REST);
  } finally {
    await streamer.close();
  }
});

test('with upstream keep-alive, a kept connection the pod closed is replaced without failing the request', async () => {
  // A pod that answers the first request of a connection with keep-alive, then resets
  // the connection when a second request comes on it.
  const server = net.createServer((socket) => {
    let served = 0;
    socket.on('error', () => {});
    socket.on('data', () => {
      served++;
      if (served > 1) {
        socket.resetAndDestroy();
        return;
      }
      socket.write(
        'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok',
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.85', () => resolve()));
  const keeping = await startProxy({
    port: 0,
    host: '127.0.0.1',
    apiKeyHeader: 'X-ROUTING-API-KEY',
    upstreamKeepalive: 4,
    ...proxyLibraryUnderTest(),
  });
  const connections: number[] = [];
  server.on('connection', (socket) => connections.push(socket.remotePort ?? 0));
  try {
    const { port } = server.address() as AddressInfo;
    await keeping.apply(
      tableOf([{ host: 'srv.test', path: '/', pods: [{ name: 'stale-0', ip: '127.0.0.85', port }] }]),
    );
    for (let i = 0; i < 3; i++) {
      const r = await request('/', { port: keeping.port });
      assert.equal(r.status, 200, `request ${i}`);
      assert.equal(r.body, 'ok');
    }
    // Requests 2 and 3 each went first on the kept connection (reset), then on a new one.
    assert.equal(connections.length, 3, `connections from ports ${connections.join(', ')}`);
    assert.deepStrictEqual(keeping.stats().upstreamFailures, 0);
  } finally {
    await keeping.close();
    server.close();
  }
});

test('a pod that does not answer within the upstream timeout gives 504', async () => {
  const hanging = await startPod('srv-hang', '127.0.0.86', { behaviour: 'hang' });
  try {
    await proxy.apply(tableOf([{ host: 'srv.test', path: '/', pods: [hanging] }]));
    const r = await request('/');
    assert.equal(r.status, 504);
  } finally {
    await hanging.close();
  }
});

test('the upload streams to the pod before the client has sent all of it', async () => {
  // A pod that answers as soon as the first bytes of the body arrive.
  const server = http.createServer((req, res) => {
    req.once('data', (chunk: Buffer) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end(`got ${chunk.toString('latin1')}`);
      req.resume();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.87', () => resolve()));
  try {
    const { port } = server.address() as AddressInfo;
    await proxy.apply(tableOf([{ host: 'srv.test', path: '/', pods: [{ name: 'upload-0', ip: '127.0.0.87', port }] }]));
    const answer = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: proxy.port,
          method: 'POST',
          path: '/up',
          headers: { Host: 'srv.test', 'Transfer-Encoding': 'chunked' },
          agent: false,
        },
        (res) => {
          let body = '';
          res.setEncoding('latin1');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => {
            req.end('second part');
            resolve(body);
          });
        },
      );
      req.on('error', reject);
      req.write('first part');
    });
    assert.equal(answer, 'got first part');
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test(
  'with no body size limit, a body far larger than what the proxy keeps for a retry streams through in bounded ' +
    'memory',
  async () => {
    const BODY = 256 * 1024 * 1024;
    const unlimited = await startProxy({
      port: 0,
      host: '127.0.0.1',
      apiKeyHeader: 'X-ROUTING-API-KEY',
      clientMaxBodySize: 0,
      ...proxyLibraryUnderTest(),
    });
    // A pod that counts what it gets and keeps none of it.
    const server = http.createServer((req, res) => {
      let bytes = 0;
      req.on('data', (chunk: Buffer) => (bytes += chunk.length));
      req.on('end', () => res.end(String(bytes)));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.88', () => resolve()));
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
    try {
      const { port } = server.address() as AddressInfo;
      await unlimited.apply(
        tableOf([{ host: 'big.test', path: '/', pods: [{ name: 'big-0', ip: '127.0.0.88', port }] }]),
      );
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request(
          {
            host: '127.0.0.1',
            port: unlimited.port,
            method: 'POST',
            path: '/up',
            headers: { Host: 'big.test', 'Content-Length': String(BODY) },
            agent: false,
          },
          (res) => {
            let body = '';
            res.setEncoding('latin1');
            res.on('data', (c: string) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        const chunk = Buffer.alloc(64 * 1024, 'x');
        let sent = 0;
        const write = (): void => {
          while (sent < BODY) {
            sent += chunk.length;
            if (!req.write(chunk)) {
              req.once('drain', write);
              return;
            }
          }
          req.end();
        };
        write();
      });
      assert.deepEqual(answer, { status: 200, body: String(BODY) });
      const grew = peak - before;
      assert.ok(
        grew < 96 * 1024 * 1024,
        `RSS grew by ${(grew / 2 ** 20).toFixed(0)} MiB while a ${BODY / 2 ** 20} MiB body passed`,
      );
    } finally {
      clearInterval(sampler);
      server.closeAllConnections();
      server.close();
      await unlimited.close();
    }
  },
);

test('stats() counts each request once, by the class of its answer, and every failed try on a pod', async () => {
  const counting = await startProxy({
    port: 0,
    host: '127.0.0.1',
    apiKeyHeader: 'X-ROUTING-API-KEY',
    ...proxyLibraryUnderTest(),
  });
  try {
    const [a] = pods as [TestPod];
    const dead = [
      { name: 'dead-0', ...(await deadAddress('127.0.0.88')) },
      { name: 'dead-1', ...(await deadAddress('127.0.0.88')) },
    ];
    await counting.apply(
      tableOf([
        { host: 'srv.test', path: '/ok', pods: [a] },
        { host: 'srv.test', path: '/dir/', pods: [a] },
        { host: 'srv.test', path: '/dead', pods: dead },
      ]),
    );
    const port = counting.port;
    assert.equal((await request('/ok', { port })).status, 200);
    assert.equal((await request('/ok', { port })).status, 200);
    assert.equal((await request('/dir', { port })).status, 301);
    assert.equal((await request('/nothing', { port })).status, 404);
    assert.equal((await request('/dead', { port })).status, 502);
    await assert.rejects(request('/', { port, host: 'unknown.test' }), /socket hang up/);
    const bad = await new Promise<string>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () =>
        socket.write('GET / HTTP/1.1\r\nHost: srv.test\r\nBad Header\r\n\r\n'),
      );
      let got = '';
      socket.on('data', (d) => (got += d.toString('latin1')));
      socket.on('close', () => resolve(got));
    });
    assert.match(bad, /^HTTP\/1\.1 400 /);
    assert.deepStrictEqual(counting.stats(), {
      requests: { '1xx': 0, '2xx': 2, '3xx': 1, '4xx': 2, '5xx': 1, dropped: 1 },
      upstreamFailures: 2,
    });
  } finally {
    await counting.close();
  }
});
