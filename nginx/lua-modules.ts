import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// What dynamic mode needs beside nginx: Debian's Lua module for nginx (with the NDK module
// it depends on) and lua-resty-core, which the Lua module loads at start. They are found
// from the nginx binary itself: `nginx -V` names the directory its dynamic modules live in.

/** The Debian packages that provide what dynamic mode needs. */
export const LUA_PACKAGES = 'libnginx-mod-http-lua lua-resty-core';

/** The two modules nginx loads (`load_module`), as absolute paths. */
export interface LuaModules {
  ndk: string;
  lua: string;
}

export type LuaModulesLookup =
  { found: true; modules: LuaModules; restyCore: string } | { found: false; problem: string };

/** Where LuaJIT looks for libraries by default (Debian's packages install in the second). */
const LUA_LIBRARY_DIRS = ['/usr/local/share/lua/5.1', '/usr/share/lua/5.1'];

/**
 * The directory of nginx's dynamic modules, from `nginx -V`: --modules-path, else
 * PREFIX/modules; null when neither is said.
 */
export function modulesPathOf(versionOutput: string): string | null {
  const option = (name: string): string | null => new RegExp(`--${name}=(\\S+)`).exec(versionOutput)?.[1] ?? null;
  const modules = option('modules-path');
  if (modules !== null) return modules;
  const prefix = option('prefix');
  return prefix === null ? null : join(prefix, 'modules');
}

function readable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

function versionOutput(nginxBinary: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(nginxBinary, ['-V'], { timeout: 10_000 }, (err: Error | null, stdout: string, stderr: string) => {
      if (err) reject(err);
      else resolve(`${stdout}${stderr}`);
    });
  });
}

/**
 * The Lua modules and lua-resty-core for `nginxBinary`, or one line that says what is
 * missing and how to install it.
 */
export async function findLuaModules(
  nginxBinary: string,
  libraryDirs: readonly string[] = LUA_LIBRARY_DIRS,
): Promise<LuaModulesLookup> {
  const install = `install them with: apt-get install ${LUA_PACKAGES}`;
  let output: string;
  try {
    output = await versionOutput(nginxBinary);
  } catch (err) {
    return { found: false, problem: `cannot run ${nginxBinary} -V to find its Lua module (${(err as Error).message})` };
  }
  const dir = modulesPathOf(output);
  if (dir === null)
    return {
      found: false,
      problem: `${nginxBinary} -V names no modules path; NGINX_MODE=dynamic needs ${LUA_PACKAGES}`,
    };
  const modules = { ndk: join(dir, 'ndk_http_module.so'), lua: join(dir, 'ngx_http_lua_module.so') };
  const missing = Object.values(modules).filter((path) => !readable(path));
  const gone = `${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'}`;
  if (missing.length > 0) {
    return {
      found: false,
      problem: `NGINX_MODE=dynamic needs nginx's Lua module: ${gone} missing; ${install}`,
    };
  }
  const restyCore = libraryDirs.map((d) => join(d, 'resty', 'core.lua')).find(readable);
  if (restyCore === undefined) {
    return {
      found: false,
      problem: `NGINX_MODE=dynamic needs lua-resty-core, found in none of ${libraryDirs.join(', ')}: ${install}`,
    };
  }
  return { found: true, modules, restyCore };
}

/**
 * The directory of the router's own Lua (nginx/lua): next to this module, in the sources
 * and in dist/ alike (the build copies it there).
 */
export function bundledLuaDir(): string {
  return fileURLToPath(new URL('./lua/', import.meta.url)).replace(/\/$/, '');
}
