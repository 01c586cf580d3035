import { isAbsolute } from 'node:path';
import { clientDirectives } from './client-directives.js';
import type { LuaModules } from './lua-modules.js';
import {
  keepalive,
  listenOn,
  proxyHeaders,
  runtimeHttp,
  runtimeMain,
  workerDirectives,
  type NginxRuntime,
  type RenderOptions,
} from './render.js';
import { headerVariable } from './syntax.js';
import { MAX_TABLE_BYTES, TABLE_DICT_BYTES } from './table-wire.js';

// The nginx.conf of NGINX_MODE=dynamic. It does not depend on the route table: the same
// settings give the same text whatever the pods are, and the router sends the table as
// data over the control socket (nginx/control-client.ts) to the Lua in nginx/lua. One
// routing server with one location, whatever the number of routes: loading the Lua module
// costs about 0.35 ms per server or location block, so a block per route would make a
// big table slow to load.

export interface DynamicRenderOptions extends RenderOptions {
  runtime: NginxRuntime;
  /**
   * The unix socket of the control server: absolute, inside the nginx prefix, in a
   * directory only the router's user may enter (nginx makes the socket itself 0666).
   */
  controlSocket: string;
  luaModules: LuaModules;
  /** The directory holding k8s_router/*.lua (lua-modules.ts: bundledLuaDir). */
  luaDir: string;
  /** How often each worker looks for a new table, in ms (5 when absent); requests look too. */
  tablePollMs?: number;
}

/** The shared dict (lua_shared_dict) that holds the table and the workers' reports. */
export const TABLE_DICT = 'k8s_router';
/** The upstream every route goes through: Lua picks the pod. */
export const BALANCER_UPSTREAM = 'k8s_router_pods';
/** Where the control server takes a table (PUT) and says which one each worker serves (GET). */
export const CONTROL_PATHS = { table: '/table', versions: '/versions' } as const;

/** The longest unix socket path Linux takes (sun_path is 108 bytes, with its NUL). */
const MAX_SOCKET_PATH = 107;
/** File paths written into Lua's package path and nginx words: no ";" "?" or quoting needed. */
const PLAIN_PATH = /^\/[A-Za-z0-9._/-]*$/;

function plainPath(what: string, path: string): string {
  if (!isAbsolute(path) || !PLAIN_PATH.test(path)) {
    throw new RangeError(
      `${what} ${JSON.stringify(path)} must be an absolute path of letters, digits, ".", "_", "-" and "/"`,
    );
  }
  return path;
}

/** client_max_body_size in bytes, as the routing server has it (nginx's default 1m). */
function maxBodySize(options: DynamicRenderOptions): number {
  return options.clientMaxBodySize ?? 1024 * 1024;
}

function luaSettings(options: DynamicRenderOptions): string {
  const pollMs = options.tablePollMs ?? 5;
  if (!Number.isInteger(pollMs) || pollMs < 1 || pollMs > 60_000)
    throw new RangeError(`table poll ${pollMs} ms is not 1 to 60000`);
  // Every value is checked above or is a number: nothing here can end the Lua string or block.
  const variable = headerVariable(options.apiKeyHeader).slice(1);
  const fields = [
    `key_variable = "${variable}"`,
    `max_body_size = ${maxBodySize(options)}`,
    `poll_ms = ${pollMs}`,
    `dict = "${TABLE_DICT}"`,
  ];
  return `{ ${fields.join(', ')} }`;
}

function controlServer(socket: string): string[] {
  // Room for the table and its request line and headers.
  const bodyLimit = MAX_TABLE_BYTES + 64 * 1024;
  return [
    '# Control server: the router puts the route table here. A unix socket in a directory only the router may enter',
    'server {',
    `listen unix:${socket};`,
    'access_log off;',
    `client_max_body_size ${bodyLimit};`,
    // The table is read in memory, not through a temp file.
    `client_body_buffer_size ${bodyLimit};`,
    `location = ${CONTROL_PATHS.table} {`,
    'content_by_lua_block {',
    'k8s_router.control.table()',
    '}',
    '}',
    `location = ${CONTROL_PATHS.versions} {`,
    'content_by_lua_block {',
    'k8s_router.control.versions()',
    '}',
    '}',
    'location / {',
    'return 404;',
    '}',
    '}',
  ];
}

/** The nginx.conf of dynamic mode for `options`; it does not depend on any route table. */
export function renderDynamicConf(options: DynamicRenderOptions): string {
  const { runtime, luaModules } = options;
  const socket = plainPath('control socket', options.controlSocket);
  if (socket.length > MAX_SOCKET_PATH)
    throw new RangeError(`control socket path ${JSON.stringify(socket)} is longer than ${MAX_SOCKET_PATH} bytes`);
  const luaDir = plainPath('Lua directory', options.luaDir);
  const connections = keepalive(options);
  const lines = [
    '# NGINX_MODE=dynamic: this file does not depend on the route table. k8s-router sends the table as data',
    '# over the control socket; Lua answers every request as the documented config would.',
    `load_module ${plainPath('NDK module', luaModules.ndk)};`,
    `load_module ${plainPath('Lua module', luaModules.lua)};`,
    ...runtimeMain(runtime),
    ...workerDirectives(options),
    'events {',
    'worker_connections 1024;',
    '}',
    'http {',
    ...runtimeHttp(runtime, options),
    ...proxyHeaders(options),
    ...clientDirectives(options),
    `lua_package_path "${luaDir}/?.lua;;";`,
    `lua_shared_dict ${TABLE_DICT} ${TABLE_DICT_BYTES};`,
    // The Lua module's default trims the C heap every 1000 requests (malloc_trim, in the log
    // phase of every request, and madvise calls); nginx itself never does.
    '# Keep freed memory as nginx does: no malloc_trim every 1000 requests',
    'lua_malloc_trim 0;',
    '# Loaded by the master: workers never read a Lua file',
    'init_by_lua_block {',
    `k8s_router = require("k8s_router.main").init(${luaSettings(options)})`,
    '}',
    'init_worker_by_lua_block {',
    'require("k8s_router.main").start_worker()',
    '}',
    '# Every route: Lua picks the pod of each try',
    `upstream ${BALANCER_UPSTREAM} {`,
    'server 0.0.0.1;',
    'balancer_by_lua_block {',
    'k8s_router.request.balance()',
    '}',
    // After the balancer: keepalive wraps the peer choice set before it.
    ...(connections > 0 ? [`keepalive ${connections};`] : []),
    '}',
    '# The routing server: Lua reads the route table and says what the documented config would answer;',
    '# unknown hosts are closed (444), known ones routed by path, and proxied when the answer is empty',
    'server {',
    `listen ${listenOn(options)} default_server;`,
    'set_by_lua_block $k8s_router_answer {',
    'return k8s_router.request.route()',
    '}',
    'if ($k8s_router_answer = 444) {',
    'return 444;',
    '}',
    'if ($k8s_router_answer = 404) {',
    'return 404;',
    '}',
    'if ($k8s_router_answer = 403) {',
    'return 403;',
    '}',
    'if ($k8s_router_answer = 301) {',
    'set_by_lua_block $k8s_router_location {',
    'return k8s_router.request.location()',
    '}',
    'return 301 $k8s_router_location;',
    '}',
    'location / {',
    `proxy_pass http://${BALANCER_UPSTREAM};`,
    'log_by_lua_block {',
    'k8s_router.request.log()',
    '}',
    '}',
    '}',
    ...controlServer(socket),
    '}',
  ];
  return `${lines.join('\n')}\n`;
}
