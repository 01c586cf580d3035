import http from 'node:http';
import type { AddressInfo } from 'node:net';
import util from 'node:util';

// Run by test/proxy-deprecation.test.ts as a child process, so that its warnings (printed
// once per process) are its own: `node --import tsx deprecation-child.ts SCENARIO`.
// Node 22 and later deprecate util._extend at run time (DEP0060); on older Node the
// child first wraps it the same way, before http-proxy is loaded and takes it.

const scenario = process.argv[2];
if (Number(process.versions.node.split('.')[0]) < 22) {
  const extend = (util as unknown as { _extend: (a: object, b: object) => object })._extend;
  (util as unknown as { _extend: unknown })._extend = util.deprecate(
    extend,
    'The `util._extend` API is deprecated. Please use Object.assign() instead.',
    'DEP0060',
  );
}

const pod = http.createServer((_req, res) => res.end('ok')).listen(0, '127.0.0.1');
await new Promise((resolve) => pod.once('listening', resolve));
const podPort = (pod.address() as AddressInfo).port;

function get(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, headers: { Host: 'a.test' }, agent: false }, (res) =>
        res.resume().on('end', resolve),
      )
      .on('error', reject);
  });
}

if (scenario === 'bare') {
  // http-proxy without the router: the warning it causes.
  const { default: httpProxy } = await import('http-proxy');
  const proxy = httpProxy.createProxyServer({});
  const server = http
    .createServer((req, res) => proxy.web(req, res, { target: `http://127.0.0.1:${podPort}` }))
    .listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  await get((server.address() as AddressInfo).port);
  server.close();
} else {
  if (scenario === 'extend-elsewhere-first')
    (util as unknown as { _extend: (a: object, b: object) => object })._extend({}, {});
  const { startProxy } = await import('../../proxy/server.js');
  const proxy = await startProxy({ port: 0, host: '127.0.0.1', apiKeyHeader: 'X-K' });
  await proxy.apply({
    routes: [
      {
        host: 'a.test',
        path: '/',
        namespace: 'ns',
        apiKey: null,
        affinity: null,
        backends: [{ pod: 'p', namespace: 'ns', ip: '127.0.0.1', port: podPort }],
      },
    ],
    rejections: [],
  });
  await get(proxy.port);
  if (scenario === 'other-warning')
    process.emitWarning('something else is deprecated', 'DeprecationWarning', 'DEP0999');
  await proxy.close();
}
pod.close();
// Warnings are emitted on the next tick: let them out before the process ends.
await new Promise((resolve) => setImmediate(resolve));
process.stdout.write('done\n');
