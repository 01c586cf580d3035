import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { MODES, startDynamic, startNginx, tableOf, type NginxUnderTest } from './conformance/harness.js';
import { startProxy, type ProxyDataPlane } from '../proxy/server.js';
import { startPod, type ReceivedRequest, type TestPod } from './support/pods.js';
import { proxyLibraryUnderTest } from './support/proxy-library.js';

// UPSTREAM_KEEPALIVE on every data plane (documented nginx, dynamic nginx, the proxy), seen
// from a pod: how many TCP connections 20
// sequential requests take. With 0 (the documented config) every request opens its own,
// even when the client keeps its connection to the router alive; with N > 0 the router
// reuses its connection to the pod, even when each client request comes on a new one.

const REQUESTS = 20;
const MODE_OFF = MODES[0];
const MODE_ON = MODES[1];

let pod: TestPod;
const planes: { backend: string; keepalive: number; port: number; close(): Promise<void> }[] = [];

before(async () => {
  pod = await startPod('reuse-0', '127.0.0.111');
  const table = tableOf([{ host: 'reuse.test', path: '/', pods: [pod] }]);
  for (const { upstreamKeepalive } of [MODE_OFF, MODE_ON]) {
    const nginx: NginxUnderTest = await startNginx(table, { upstreamKeepalive });
    planes.push({ backend: 'nginx', keepalive: upstreamKeepalive, port: nginx.port, close: () => nginx.close() });
    const dynamic = await startDynamic(table, { upstreamKeepalive });
    const close = (): Promise<void> => dynamic.close();
    planes.push({ backend: 'dynamic nginx', keepalive: upstreamKeepalive, port: dynamic.port, close });
    const proxy: ProxyDataPlane = await startProxy({
      port: 0,
      host: '127.0.0.1',
      apiKeyHeader: 'X-ROUTING-API-KEY',
      upstreamKeepalive,
      ...proxyLibraryUnderTest(),
    });
    await proxy.apply(table);
    planes.push({ backend: 'proxy', keepalive: upstreamKeepalive, port: proxy.port, close: () => proxy.close() });
  }
});

after(async () => {
  await Promise.all(planes.map((p) => p.close()));
  await pod?.close();
});

function get(port: number, agent: http.Agent | false): Promise<ReceivedRequest> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/r', headers: { Host: 'reuse.test' }, agent }, (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () =>
          res.statusCode === 200
            ? resolve(JSON.parse(body) as ReceivedRequest)
            : reject(new Error(`status ${res.statusCode}: ${body}`)),
        );
      })
      .on('error', reject);
  });
}

/** The pod-side connections (by the router's port) that `REQUESTS` sequential requests came on. */
async function podConnections(
  port: number,
  clientKeepsAlive: boolean,
): Promise<{ connections: number; connectionHeaders: string[] }> {
  const agent = clientKeepsAlive ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false;
  try {
    const seen: ReceivedRequest[] = [];
    for (let i = 0; i < REQUESTS; i++) seen.push(await get(port, agent));
    const connectionHeaders = seen.map(
      (r) =>
        r.headers
          .filter(([k]) => k.toLowerCase() === 'connection')
          .map(([, v]) => v)
          .join(',') || '(none)',
    );
    return { connections: new Set(seen.map((r) => r.remotePort)).size, connectionHeaders };
  } finally {
    if (agent !== false) agent.destroy();
  }
}

for (const backend of ['nginx', 'dynamic nginx', 'proxy']) {
  test(
    `${backend}, UPSTREAM_KEEPALIVE=0: a new pod connection per request, ` + '"Connection: close" to the pod',
    async () => {
      const plane = planes.find((p) => p.backend === backend && p.keepalive === MODE_OFF.upstreamKeepalive);
      assert.ok(plane);
      for (const clientKeepsAlive of [false, true]) {
        const { connections, connectionHeaders } = await podConnections(plane.port, clientKeepsAlive);
        assert.equal(connections, REQUESTS, `client keeps alive: ${clientKeepsAlive}`);
        // Node's client says "keep-alive" when it keeps its connection: nginx passes it on, and still closes.
        assert.deepStrictEqual(new Set(connectionHeaders), new Set([clientKeepsAlive ? 'keep-alive' : 'close']));
      }
    },
  );

  test(
    `${backend}, UPSTREAM_KEEPALIVE=${MODE_ON.upstreamKeepalive}: pod connections are reused, ` +
      'no Connection header to the pod',
    async () => {
      const plane = planes.find((p) => p.backend === backend && p.keepalive === MODE_ON.upstreamKeepalive);
      assert.ok(plane);
      for (const clientKeepsAlive of [false, true]) {
        const { connections, connectionHeaders } = await podConnections(plane.port, clientKeepsAlive);
        // Sequential requests: one kept connection serves them all (a second one is allowed
        // for a connection the pod closed while idle).
        assert.ok(
          connections <= 2,
          `${connections} pod connections for ${REQUESTS} requests (client keeps alive: ${clientKeepsAlive})`,
        );
        assert.deepStrictEqual(new Set(connectionHeaders), new Set(['(none)']));
      }
    },
  );
}
