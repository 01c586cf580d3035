import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { renderNginxConf } from '../../nginx/render.js';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { defaultConfig, type RouterConfig } from '../../src/core/config.js';
import type { Pod, Secret } from '../../src/core/kube-objects.js';
import { buildRouteTable } from '../../src/core/route-table.js';
import { FakeApiServer, type FakeApiServerOptions } from './fake-api-server.js';
import { startRouterProcess, type RouterProcess } from './router-process.js';
import { workDir } from './work-dir.js';

// The router prints the nginx.conf of every new table (--print-nginx-config); tests read
// that output as the sequence of tables the router built, and compare it with the config
// rendered here from the objects the fake API server holds.

/** Each printed nginx.conf starts with one of these lines. */
const CONFIG_START = /(?=^(?:events \{$|# A very simple nginx configuration file))/m;

/** Every config in `stdout`, in the order printed. */
export function printedConfigs(stdout: string): string[] {
  return stdout === '' ? [] : stdout.split(CONFIG_START);
}

/** The last config printed, if any. */
export function lastPrintedConfig(stdout: string): string | undefined {
  return printedConfigs(stdout).at(-1);
}

/** The config the router should print for the objects the API server holds now. */
export function configForServerObjects(api: FakeApiServer, config: RouterConfig): string {
  const pods = api.store.list({ kind: 'Pod', fields: [] }) as Pod[];
  const secrets = api.store.list({ kind: 'Secret', fields: [] }) as Secret[];
  return renderNginxConf(buildRouteTable(config, pods, secrets), config);
}

export interface PrintingRouter {
  api: FakeApiServer;
  router: RouterProcess;
  port: number;
  /** The config the router should print for the objects the API server holds now. */
  expected(): string;
  /** Stops the router (SIGTERM) and the API server; resolves with the router's exit. */
  close(): Promise<number | NodeJS.Signals>;
}

/**
 * A fake API server and `k8s-router run --print-nginx-config true` following it, on a free
 * loopback port, with short batching windows (HOLD_OFF_MS 20, MAX_DELAY_MS 100) unless
 * `env` says otherwise.
 */
export async function startPrintingRouter(
  backend: 'proxy' | 'nginx',
  env: Record<string, string> = {},
  server: FakeApiServerOptions = {},
): Promise<PrintingRouter> {
  const dir = await workDir(`k8s-router-printing-${backend}-`);
  const api = await FakeApiServer.start(server);
  const port = await pickFreeLoopbackPort();
  let router: RouterProcess;
  try {
    router = await startRouterProcess(['--backend', backend, '--print-nginx-config', 'true'], {
      PORT: String(port),
      LISTEN_ADDRESS: '127.0.0.1',
      NGINX_PREFIX: join(dir, 'nginx'),
      HOLD_OFF_MS: '20',
      MAX_DELAY_MS: '100',
      KUBECONFIG: api.kubeConfigFile(),
      LOG_LEVEL: 'info',
      ...env,
    });
  } catch (err) {
    await api.close();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const config: RouterConfig = defaultConfig({ port: String(port), listenAddress: '127.0.0.1' });
  return {
    api,
    router,
    port,
    expected: () => configForServerObjects(api, config),
    async close() {
      const exit = await router.stop();
      await api.close();
      await rm(dir, { recursive: true, force: true });
      return exit;
    },
  };
}
