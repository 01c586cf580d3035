import { defaultConfig, withDefaults, type RouterConfig } from '../src/core/config.js';
import type { ProxyLibrary } from './http-proxy.js';
import type { ProxyLogger } from './logger.js';

// What the in-process proxy can be told, and what it runs with when it is not: the
// settings table's defaults, the same as `k8s-router run` with no flags, plus the two
// nginx defaults no setting changes.

/** nginx's proxy_connect/read/send_timeout: no setting changes them. */
const UPSTREAM_TIMEOUT_MS = 60_000;
/** nginx's fail_timeout: how long a pod that failed is skipped. */
const FAIL_TIMEOUT_MS = 10_000;

export interface ProxySettings {
  /** PORT; 0 takes a free one. */
  port: number;
  /** LISTEN_ADDRESS: the IP address to bind; "*" means every IPv4 address, as nginx's `listen PORT`. */
  host: string;
  apiKeyHeader: string;
  /** nginx's proxy_connect/read/send_timeout. */
  upstreamTimeoutMs: number;
  /** nginx's fail_timeout. */
  failTimeoutMs: number;
  /** nginx's client_max_body_size in bytes; 0: no limit. */
  clientMaxBodySize: number;
  /** nginx's client_header_timeout: the request line and headers must come within it. */
  clientHeaderTimeoutMs: number;
  /** nginx's client_body_timeout: the longest pause between two reads of a body. */
  clientBodyTimeoutMs: number;
  /** nginx's keepalive_timeout: how long an idle connection is kept; 0 for none. */
  keepaliveTimeoutMs: number;
  /** nginx's keepalive_requests: requests one connection carries. */
  keepaliveRequests: number;
  /** SHUTDOWN_GRACE_MS: how long close() lets requests and WebSockets in flight finish before cutting them. */
  closeGraceMs: number;
  /** UPSTREAM_KEEPALIVE: idle connections kept per pod, and the headers nginx sends in that mode; 0 as documented. */
  upstreamKeepalive: number;
}

export interface ProxyOptions extends Partial<ProxySettings> {
  logger?: ProxyLogger;
  /** The proxy library (http-proxy's createProxyServer); the benchmark compares another. */
  proxyLibrary?: ProxyLibrary;
}

/** The proxy's settings as `run` gives them: from the router's configuration. */
export function proxyOptionsFrom(config: RouterConfig): ProxySettings {
  return {
    port: config.port,
    host: config.listenAddress,
    apiKeyHeader: config.apiKeyHeader,
    upstreamTimeoutMs: UPSTREAM_TIMEOUT_MS,
    failTimeoutMs: FAIL_TIMEOUT_MS,
    clientMaxBodySize: config.clientMaxBodySize,
    clientHeaderTimeoutMs: config.clientHeaderTimeoutMs,
    clientBodyTimeoutMs: config.clientBodyTimeoutMs,
    keepaliveTimeoutMs: config.keepaliveTimeoutMs,
    keepaliveRequests: config.keepaliveRequests,
    closeGraceMs: config.shutdownGraceMs,
    upstreamKeepalive: config.upstreamKeepalive,
  };
}

/** What a proxy started with `options` runs with: each one not given takes the setting's default. */
export function resolveProxyOptions(options: ProxyOptions = {}): ProxySettings {
  return withDefaults(proxyOptionsFrom(defaultConfig()), options);
}
