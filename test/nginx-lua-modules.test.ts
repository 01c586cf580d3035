import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { bundledLuaDir, findLuaModules, LUA_PACKAGES, modulesPathOf } from '../nginx/lua-modules.js';
import { NGINX_BINARY } from './support/nginx-check.js';

// Finding what dynamic mode needs from the nginx binary: the Lua module, the NDK module it
// depends on, and lua-resty-core; or one line that names the Debian packages to install.

const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

/** An executable that prints `output` to stderr, as `nginx -V` does. */
async function fakeNginx(output: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'k8s-router-fake-nginx-'));
  dirs.push(dir);
  const path = join(dir, 'nginx');
  await writeFile(path, `#!/bin/sh\ncat >&2 <<'EOF'\n${output}\nEOF\n`);
  await chmod(path, 0o755);
  return path;
}

describe('the Lua modules of dynamic mode', () => {
  it('reads the modules directory from nginx -V: --modules-path, else PREFIX/modules', () => {
    assert.equal(
      modulesPathOf(
        'configure arguments: --prefix=/usr/share/nginx --modules-path=/usr/lib/nginx/modules --with-compat',
      ),
      '/usr/lib/nginx/modules',
    );
    assert.equal(modulesPathOf('configure arguments: --prefix=/opt/nginx --with-debug'), '/opt/nginx/modules');
    assert.equal(modulesPathOf('nginx version: nginx/1.22.1'), null);
  });

  it("finds Debian's modules and lua-resty-core for the nginx the tests run", async () => {
    const lookup = await findLuaModules(NGINX_BINARY);
    assert.ok(lookup.found, lookup.found ? '' : lookup.problem);
    assert.match(lookup.modules.lua, /\/ngx_http_lua_module\.so$/);
    assert.match(lookup.modules.ndk, /\/ndk_http_module\.so$/);
    assert.match(lookup.restyCore, /\/resty\/core\.lua$/);
  });

  it('says which packages to install when the modules are missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'k8s-router-no-modules-'));
    dirs.push(dir);
    const lookup = await findLuaModules(await fakeNginx(`configure arguments: --modules-path=${dir}`));
    assert.equal(lookup.found, false);
    assert.ok(!lookup.found);
    assert.match(lookup.problem, new RegExp(`ngx_http_lua_module\\.so.*apt-get install ${LUA_PACKAGES}`));
    assert.ok(!lookup.problem.includes('\n'), 'one line');
  });

  it('says which packages to install when lua-resty-core is missing', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'k8s-router-no-resty-'));
    dirs.push(empty);
    const lookup = await findLuaModules(NGINX_BINARY, [empty]);
    assert.ok(!lookup.found);
    assert.match(lookup.problem, new RegExp(`lua-resty-core.*apt-get install ${LUA_PACKAGES}`));
  });

  it('says so when nginx cannot be run at all', async () => {
    const lookup = await findLuaModules('/nonexistent/nginx');
    assert.ok(!lookup.found);
    assert.match(lookup.problem, /cannot run \/nonexistent\/nginx -V/);
  });

  it("ships the router's Lua next to the module that finds it", () => {
    for (const file of ['main', 'request', 'control', 'state', 'wire', 'routes', 'peers', 'chash']) {
      assert.ok(existsSync(join(bundledLuaDir(), 'k8s_router', `${file}.lua`)), `${file}.lua`);
    }
  });
});
