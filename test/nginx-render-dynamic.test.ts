import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { bundledLuaDir, findLuaModules } from '../nginx/lua-modules.js';
import { renderDynamicConf, type DynamicRenderOptions } from '../nginx/render-dynamic.js';
import { NGINX_BINARY, nginxTest } from './support/nginx-check.js';

// The nginx.conf of NGINX_MODE=dynamic: made of the settings alone (no route table goes
// in), one routing server and location whatever the routes, the documented proxy headers,
// and a config nginx loads, Lua and all, in every variant of the settings.

const lookup = await findLuaModules(NGINX_BINARY);
if (!lookup.found) throw new Error(lookup.problem);

const dir = mkdtempSync(join(tmpdir(), 'k8s-router-render-dynamic-'));
mkdirSync(join(dir, 'temp'));
// nginx -t binds the control socket to check it: its directory must exist.
mkdirSync(join(dir, 'control'), { mode: 0o700 });
after(() => rmSync(dir, { recursive: true, force: true }));

const options = (over: Partial<DynamicRenderOptions> = {}): DynamicRenderOptions => ({
  port: 8080,
  listenAddress: '*',
  apiKeyHeader: 'X-ROUTING-API-KEY',
  runtime: {
    pidFile: `${dir}/nginx.pid`,
    errorLog: `${dir}/error.log`,
    accessLog: `${dir}/access.log`,
    tempDir: `${dir}/temp`,
    status: { port: 8081, configVersion: 'v1' },
  },
  controlSocket: `${dir}/control/table.sock`,
  luaModules: lookup.modules,
  luaDir: bundledLuaDir(),
  ...over,
});

describe('the dynamic nginx.conf', () => {
  it('holds one routing server with one location, one balancer upstream and the control server', () => {
    const text = renderDynamicConf(options());
    assert.equal(text.match(/^server \{$/gm)?.length, 3, 'routing, status and control servers');
    assert.equal(text.match(/^upstream /gm)?.length, 1);
    assert.equal(
      text.match(/^location \/ \{$/gm)?.length,
      3,
      'the routing location, and the 404s of the status and control servers',
    );
    assert.match(text, /^listen 8080 default_server;$/m);
    assert.match(text, new RegExp(`^listen unix:${dir}/control/table\\.sock;$`, 'm'));
    assert.ok(!/server_name/.test(text));
    assert.equal(renderDynamicConf(options()), text, 'the same settings give the same text');
  });

  it('loads the Lua module and its NDK, and hands the settings to the Lua in the master', () => {
    const text = renderDynamicConf(options({ apiKeyHeader: 'X-Tenant-Key', clientMaxBodySize: 0 }));
    assert.match(text, new RegExp(`^load_module ${lookup.modules.ndk};\\nload_module ${lookup.modules.lua};$`, 'm'));
    const settings = '{ key_variable = "http_x_tenant_key", max_body_size = 0, poll_ms = 5, dict = "k8s_router" }';
    assert.ok(
      text.includes(`\ninit_by_lua_block {\nk8s_router = require("k8s_router.main").init(${settings})\n}\n`),
      text,
    );
    assert.match(text, new RegExp(`^lua_package_path "${bundledLuaDir()}/\\?\\.lua;;";$`, 'm'));
    assert.match(
      text,
      /^lua_malloc_trim 0;$/m,
      'the C heap is kept as nginx keeps it, not trimmed every 1000 requests',
    );
  });

  it('sends the headers of the documented config, and upstream keep-alive after the balancer', () => {
    const documented = renderDynamicConf(options());
    assert.match(documented, /^map \$http_connection \$p_connection \{\ndefault \$http_connection;\n'' close;\n\}$/m);
    const headers = ['Connection $p_connection', 'Host $host', 'Upgrade $http_upgrade'];
    assert.ok(documented.includes(headers.map((h) => `\nproxy_set_header ${h};`).join('')), documented);
    assert.ok(!documented.includes('keepalive '));
    const kept = renderDynamicConf(options({ upstreamKeepalive: 32 }));
    assert.match(kept, /^map \$http_upgrade \$p_connection \{$/m);
    assert.match(kept, /^balancer_by_lua_block \{\nk8s_router\.request\.balance\(\)\n\}\nkeepalive 32;\n\}$/m);
  });

  it('refuses paths that would need quoting in nginx.conf or mean something in a Lua path', () => {
    const refused: Partial<DynamicRenderOptions>[] = [
      { controlSocket: 'control/table.sock' },
      { controlSocket: '/tmp/a b/table.sock' },
      { controlSocket: `/tmp/${'x'.repeat(110)}.sock` },
      { luaDir: '/tmp/lua;/evil' },
      { luaDir: '/tmp/lua?' },
      { luaModules: { ndk: '/tmp/x;', lua: lookup.modules.lua } },
    ];
    for (const over of refused) assert.throws(() => renderDynamicConf(options(over)), RangeError, JSON.stringify(over));
  });

  it('is a config nginx loads, Lua included, in every variant of the settings', async () => {
    const variants: Partial<DynamicRenderOptions>[] = [
      {},
      { upstreamKeepalive: 32 },
      { workerProcesses: 4 },
      { workerProcesses: 'auto' },
      { listenAddress: '127.0.0.1' },
      { listenAddress: '::1' },
      { clientMaxBodySize: 0, clientHeaderTimeoutMs: 600, keepaliveRequests: 3 },
      { tablePollMs: 100 },
    ];
    for (const over of variants) {
      const verdict = await nginxTest(renderDynamicConf(options(over)));
      assert.ok(verdict.ok, `${JSON.stringify(over)}: ${verdict.output}`);
    }
  });
});
