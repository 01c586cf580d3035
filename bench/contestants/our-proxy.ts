import { readFileSync } from 'node:fs';
import { createProxyServer } from 'http-proxy-3';
import { startProxy } from '../../proxy/server.js';
import type { Route } from '../../src/core/route-table.js';
import { KEEPALIVE } from './routes.js';

// Our proxy (startProxy, as `k8s-router run --backend proxy` starts it) with upstream
// keep-alive, on the library it ships with or on http-proxy-3: the library comparison
// inside the router. `our-proxy.ts ROUTES_FILE PORT [http-proxy-3]`

const [file, port, library] = process.argv.slice(2);
if (file === undefined || port === undefined) throw new Error('usage: our-proxy.ts ROUTES_FILE PORT [http-proxy-3]');
const routes = JSON.parse(readFileSync(file, 'utf8')) as Route[];
const proxy = await startProxy({
  port: Number(port),
  host: '127.0.0.1',
  apiKeyHeader: 'X-ROUTING-API-KEY',
  upstreamKeepalive: KEEPALIVE,
  ...(library === 'http-proxy-3' ? { proxyLibrary: createProxyServer } : {}),
});
await proxy.apply({ routes, rejections: [] });
