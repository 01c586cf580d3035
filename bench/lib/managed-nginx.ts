import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { RouterConfig } from '../../src/core/config.js';
import { dynamicDelivery } from '../../nginx/dynamic-delivery.js';
import { IncrementalNginxRenderer } from '../../nginx/incremental-render.js';
import { bundledLuaDir, findLuaModules } from '../../nginx/lua-modules.js';
import { createNginxDataPlane, nginxManagerOptionsFrom, type NginxDataPlane } from '../../nginx/process.js';

// The router's nginx manager built the way `k8s-router run --backend nginx` builds it, in
// either NGINX_MODE, for benchmarks that drive it in-process: the same delivery (the
// incremental renderer for documented mode; the table sent to Lua over the control socket
// in the prefix for dynamic mode) and the same manager settings from the configuration.

export async function managedNginx(
  config: RouterConfig,
  nginxBinary: string,
  prefix: string,
  logger?: Logger,
): Promise<NginxDataPlane> {
  await mkdir(prefix, { recursive: true });
  // As root nginx's workers run as nobody: they must reach their files under the prefix.
  await chmod(prefix, 0o755);
  const common = { nginxBinary, prefix, ...nginxManagerOptionsFrom(config), ...(logger ? { logger } : {}) };
  if (config.nginxMode === 'documented') {
    const renderer = new IncrementalNginxRenderer();
    return createNginxDataPlane({
      ...common,
      render: (table, runtime) => renderer.pieces(table, { ...config, runtime }),
    });
  }
  const lua = await findLuaModules(nginxBinary);
  if (!lua.found) throw new Error(lua.problem);
  const delivery = dynamicDelivery({
    render: config,
    controlSocket: join(prefix, 'control', 'table.sock'),
    luaModules: lua.modules,
    luaDir: bundledLuaDir(),
    timeoutMs: config.nginxReloadTimeoutMs,
  });
  return createNginxDataPlane({ ...common, delivery });
}
