import { renderNginxConf } from '../../nginx/render.js';
import type { RouterConfig } from '../../src/core/config.js';
import type { Pod, Secret } from '../../src/core/kube-objects.js';
import { buildRouteTable } from '../../src/core/route-table.js';
import type { FakeApiServer } from './fake-api-server.js';

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
