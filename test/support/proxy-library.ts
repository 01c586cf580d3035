import { createProxyServer } from 'http-proxy-3';
import type { ProxyLibrary } from '../../proxy/http-proxy.js';

// The proxy library the tests run the in-process proxy on: the one it ships with
// (http-proxy 1.18.1), or http-proxy-3 with PROXY_LIBRARY=http-proxy-3, so that the
// conformance and robustness suites compare the two libraries as the README says.

export function proxyLibraryUnderTest(): { proxyLibrary?: ProxyLibrary } {
  const name = process.env.PROXY_LIBRARY;
  if (name === undefined || name === '' || name === 'http-proxy') return {};
  if (name === 'http-proxy-3') return { proxyLibrary: createProxyServer };
  throw new Error(`PROXY_LIBRARY=${name}: the tests know http-proxy (the default) and http-proxy-3`);
}
