import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nginxManagerOptionsFrom, resolveNginxManagerSettings } from '../nginx/process.js';
import { renderNginxConf } from '../nginx/render.js';
import { proxyOptionsFrom, resolveProxyOptions } from '../proxy/proxy-options.js';
import { startProxy } from '../proxy/server.js';
import { adminServerOptionsFrom, resolveAdminServerOptions } from '../src/admin/server.js';
import { loggerOptionsFrom, resolveLoggerOptions } from '../src/commands/logger.js';
import { loadConfig, type RouterConfig } from '../src/core/config.js';
import { buildRouteTable } from '../src/core/route-table.js';
import { resolveControllerTiming } from '../src/control/controller.js';
import { kubeSourceOptionsFrom, resolveKubeSourceOptions } from '../src/sources/kube-source.js';
import { apiKeySecret, pod } from './support/objects.js';

// Every default lives in the settings table: the library called without options behaves
// as `k8s-router run` with no flags and an empty environment. For each entry point with
// options: what it runs with when given none (`library`), and what it runs with when the
// CLI starts it from a configuration (`cli`, the way src/commands/run.ts builds its
// options). The two must be equal for the configuration of no flags, and each setting the
// entry point reads must reach it from the CLI.

/** What `run` reads with no flags and no environment. */
const noFlags = (): RouterConfig => loadConfig({});

interface EntryPoint {
  name: string;
  /** What it runs with, called with no options (only what it cannot do without). */
  library: () => unknown;
  /** What it runs with when the CLI starts it with `config`. */
  cli: (config: RouterConfig) => unknown;
  /** Settings it reads, each with a value other than its default. */
  reads: Record<string, string>;
}

const ENTRY_POINTS: EntryPoint[] = [
  {
    name: 'startProxy',
    library: () => resolveProxyOptions(),
    cli: (config) => resolveProxyOptions(proxyOptionsFrom(config)),
    reads: {
      PORT: '8080',
      LISTEN_ADDRESS: '127.0.0.1',
      API_KEY_HEADER: 'X-KEY',
      SHUTDOWN_GRACE_MS: '5000',
      UPSTREAM_KEEPALIVE: '8',
      CLIENT_HEADER_TIMEOUT_MS: '1000',
      CLIENT_BODY_TIMEOUT_MS: '1000',
      KEEPALIVE_TIMEOUT_MS: '1000',
      KEEPALIVE_REQUESTS: '10',
      CLIENT_MAX_BODY_SIZE: '2m',
    },
  },
  {
    name: 'createKubeSource',
    library: () => resolveKubeSourceOptions({}),
    cli: (config) => resolveKubeSourceOptions(kubeSourceOptionsFrom(config)),
    reads: {
      ROUTABLE_LABEL_SELECTOR: 'app=web',
      HOSTS_ANNOTATION: 'hosts',
      PATHS_ANNOTATION: 'paths',
      API_KEY_SECRET_LOCATION: 'keys:key',
      WATCH_BACKOFF_MAX_MS: '5000',
    },
  },
  {
    name: 'createController',
    // The controller cannot work without the configuration its tables are built from.
    library: () => resolveControllerTiming({ config: noFlags() }),
    cli: (config) => resolveControllerTiming({ config }),
    reads: { HOLD_OFF_MS: '10', MAX_DELAY_MS: '20' },
  },
  {
    name: 'startAdminServer',
    library: () => resolveAdminServerOptions(),
    cli: (config) => resolveAdminServerOptions(adminServerOptionsFrom(config) ?? undefined),
    reads: { ADMIN_PORT: '9999', ADMIN_ADDRESS: '127.0.0.2' },
  },
  {
    name: 'createLogger',
    library: () => resolveLoggerOptions(),
    cli: (config) => {
      const { level, format } = loggerOptionsFrom(config);
      return resolveLoggerOptions(level, { format });
    },
    reads: { LOG_LEVEL: 'debug', LOG_FORMAT: 'json' },
  },
  {
    name: 'createNginxDataPlane',
    library: () => resolveNginxManagerSettings(),
    cli: (config) => resolveNginxManagerSettings(nginxManagerOptionsFrom(config)),
    reads: { NGINX_TEST_CONFIG: 'false', NGINX_RELOAD_TIMEOUT_MS: '5000', SHUTDOWN_GRACE_MS: '5000' },
  },
];

describe('the library without options behaves as the CLI with no flags', () => {
  for (const entry of ENTRY_POINTS) {
    it(`${entry.name}: the same settings, the defaults of the settings table`, () => {
      assert.deepEqual(entry.library(), entry.cli(noFlags()));
    });

    it(`${entry.name}: each setting it reads reaches it from the CLI`, () => {
      const byDefault = entry.cli(noFlags());
      for (const [name, value] of Object.entries(entry.reads)) {
        assert.notDeepEqual(
          entry.cli(loadConfig({ [name]: value })),
          byDefault,
          `${name}=${value} changes what ${entry.name} runs with`,
        );
      }
    });
  }

  it('startProxy: a proxy started with only a free port runs with the settings the CLI gives it', async () => {
    const proxy = await startProxy({ port: 0, host: '127.0.0.1' });
    try {
      assert.deepEqual(proxy.settings, {
        ...resolveProxyOptions(proxyOptionsFrom(noFlags())),
        port: 0,
        host: '127.0.0.1',
      });
      // Once 5 s here against 25 s for the CLI: requests in flight get SHUTDOWN_GRACE_MS either way.
      assert.equal(proxy.settings.closeGraceMs, 25_000);
    } finally {
      await proxy.close();
    }
  });

  it('renderNginxConf: the options it cannot do without render what `render` with no flags prints', () => {
    const config = noFlags();
    const table = buildRouteTable(
      config,
      [pod('web-0', { namespace: 'shop', ip: '10.0.0.1', hosts: 'shop.test', paths: '80:/ 3000:/api' })],
      [apiKeySecret('shop', 'supersecret')],
    );
    const minimal = { port: config.port, listenAddress: config.listenAddress, apiKeyHeader: config.apiKeyHeader };
    assert.equal(renderNginxConf(table, minimal), renderNginxConf(table, config));
  });
});
