import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RouteTable } from '../../src/core/route-table.js';
import type { ClientLimits } from '../../nginx/client-directives.js';
import {
  prepareControlSocket,
  putTable,
  servedByEveryWorker,
  tableVersions,
  type TableVersions,
} from '../../nginx/control-client.js';
import { bundledLuaDir, findLuaModules, type LuaModules } from '../../nginx/lua-modules.js';
import { spawnNginxMaster, type NginxMaster } from '../../nginx/master.js';
import { renderDynamicConf } from '../../nginx/render-dynamic.js';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { serializeTable } from '../../nginx/table-wire.js';
import { childrenOf, waitForRetirement } from '../../nginx/workers.js';
import { NGINX_BINARY } from './nginx-check.js';

// Dynamic nginx for tests, until the product's manager runs it: the constant nginx.conf of
// NGINX_MODE=dynamic, nginx in the foreground in a throw-away prefix, and each table put
// over the control socket, confirmed once every worker serves it. The interface is the
// documented harness's (apply, applyFresh, errorLog, close), so that the manager can take
// its place.

export interface DynamicNginxOptions {
  upstreamKeepalive?: number;
  clientLimits?: ClientLimits;
  /** http-level directives added to the config (the suites' short upstream timeouts). */
  httpDirectives?: readonly string[];
  workerProcesses?: number;
  /** Where the Lua is (the router's own, nginx/lua, when absent). */
  luaDir?: string;
}

export interface DynamicNginx {
  readonly port: number;
  readonly prefix: string;
  readonly controlSocket: string;
  /** The running master (restart() replaces it). */
  readonly master: NginxMaster;
  /** The version of the last table put. */
  readonly version: string;
  /** Puts `table` and waits until every worker serves it; no reload. */
  apply(table: RouteTable): Promise<void>;
  /** apply(), then a reload: new workers, with fresh balancing state, serving the table. */
  applyFresh(table: RouteTable): Promise<void>;
  /** Which table each worker serves, as nginx says. */
  versions(): Promise<TableVersions>;
  /**
   * Stops nginx and starts it again on the same config, as the manager does when nginx
   * died, and waits until its control server answers. The table is not put again: nginx
   * starts with none (the shared dict does not survive a restart).
   */
  restart(): Promise<void>;
  errorLog(): Promise<string>;
  close(): Promise<void>;
}

const CONFIRM_TIMEOUT_MS = 10_000;
const CONTROL_TIMEOUT_MS = 5_000;

export const API_KEY_HEADER = 'X-ROUTING-API-KEY';

/** The lines of an error log that say the router's Lua failed: a Lua error, or its own complaints. */
export function luaFailures(log: string): string[] {
  return log.split('\n').filter((line) => /failed to run \w+_by_lua|runtime error|k8s-router: /.test(line));
}

async function until<T>(what: string, probe: () => Promise<T | null>, timeoutMs = CONFIRM_TIMEOUT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const value = await probe();
      if (value !== null) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`dynamic nginx: ${what} within ${timeoutMs} ms${last ? ` (${(last as Error).message})` : ''}`);
    await sleep(5);
  }
}

interface DynamicFiles {
  prefix: string;
  port: number;
  controlSocket: string;
  files: { pidFile: string; errorLog: string; accessLog: string; tempDir: string };
  confPath: string;
}

/** The files of a dynamic nginx in a new prefix: its config, with free ports, and a control socket ready. */
async function prepareDynamicNginx(options: DynamicNginxOptions, luaModules: LuaModules): Promise<DynamicFiles> {
  const prefix = await mkdtemp(join(tmpdir(), 'k8s-router-dynamic-'));
  // nginx's workers run as nobody (the tests run as root) and must reach the temp dir.
  await chmod(prefix, 0o755);
  const port = await pickFreeLoopbackPort();
  let statusPort = await pickFreeLoopbackPort();
  while (statusPort === port) statusPort = await pickFreeLoopbackPort();
  const controlSocket = join(prefix, 'control', 'table.sock');
  const files = {
    pidFile: join(prefix, 'nginx.pid'),
    errorLog: join(prefix, 'logs', 'error.log'),
    accessLog: join(prefix, 'logs', 'access.log'),
    tempDir: join(prefix, 'temp'),
  };
  await mkdir(join(prefix, 'logs'));
  await mkdir(files.tempDir);
  await prepareControlSocket(controlSocket);
  let text = renderDynamicConf({
    port,
    listenAddress: '127.0.0.1',
    apiKeyHeader: API_KEY_HEADER,
    upstreamKeepalive: options.upstreamKeepalive ?? 0,
    ...(options.workerProcesses === undefined ? {} : { workerProcesses: options.workerProcesses }),
    ...options.clientLimits,
    runtime: { ...files, status: { port: statusPort, configVersion: 'dynamic' } },
    controlSocket,
    luaModules,
    luaDir: options.luaDir ?? bundledLuaDir(),
  });
  const directives = options.httpDirectives ?? [];
  if (directives.length > 0) text = text.replace(/^http \{\n/m, (open) => `${open}${directives.join('\n')}\n`);
  const confPath = join(prefix, 'nginx.conf');
  await writeFile(confPath, text);
  return { prefix, port, controlSocket, files, confPath };
}

/**
 * Stops nginx, then removes its prefix; throws when its error log shows that the router's Lua failed, wherever it
 * happened: the Lua never fails silently.
 */
export async function closeCheckingLua(
  stop: () => Promise<unknown>,
  errorLog: () => Promise<string>,
  prefix: string,
): Promise<void> {
  let log = '';
  try {
    await stop();
    log = await errorLog();
  } finally {
    await rm(prefix, { recursive: true, force: true });
  }
  const failures = luaFailures(log);
  if (failures.length > 0) throw new Error(`dynamic nginx logged Lua failures:\n${failures.join('\n')}`);
}

export async function startDynamicNginx(table: RouteTable, options: DynamicNginxOptions = {}): Promise<DynamicNginx> {
  const lookup = await findLuaModules(NGINX_BINARY);
  if (!lookup.found) throw new Error(lookup.problem);
  const { prefix, port, controlSocket, files, confPath } = await prepareDynamicNginx(options, lookup.modules);
  const spawn = (): NginxMaster =>
    spawnNginxMaster({ nginxBinary: NGINX_BINARY, prefix, confPath, errorLog: files.errorLog });
  let master = spawn();
  let generation = 0;
  let version = '';

  const versions = (): Promise<TableVersions> => tableVersions(controlSocket, CONTROL_TIMEOUT_MS);
  const workerPids = async (): Promise<Set<number>> =>
    new Set((await childrenOf(master.pid as number)).map((c) => c.pid));
  const confirm = (wanted: string, excluded: ReadonlySet<number> = new Set()): Promise<true> =>
    until(`every worker to serve table ${wanted}`, async () => {
      if (master.exit() !== null) throw new Error(`nginx exited: ${master.output()}`);
      const live = await workerPids();
      for (const pid of excluded) live.delete(pid);
      return servedByEveryWorker(await versions(), wanted, live) ? true : null;
    });

  const apply = async (t: RouteTable): Promise<void> => {
    version = `t${++generation}`;
    await putTable(controlSocket, serializeTable(t, version), CONTROL_TIMEOUT_MS);
    await confirm(version);
  };

  const errorLog = (): Promise<string> => readFile(files.errorLog, 'utf8').catch(() => '');
  const close = (): Promise<void> =>
    closeCheckingLua(() => master.stop({ gracefulMs: 5_000, fastMs: 2_000 }), errorLog, prefix);

  const answering = (): Promise<true> =>
    until('the control socket to answer', async () => {
      if (master.exit() !== null) throw new Error(`nginx exited: ${master.output()}`);
      return (await versions()).reports.length > 0 ? true : null;
    });

  try {
    await answering();
    await apply(table);
  } catch (err) {
    await close();
    throw err;
  }

  return {
    port,
    prefix,
    controlSocket,
    get master() {
      return master;
    },
    get version() {
      return version;
    },
    apply,
    async applyFresh(t) {
      await apply(t);
      const old = await childrenOf(master.pid as number);
      master.signal('SIGHUP');
      await confirm(version, new Set(old.map((w) => w.pid)));
      const still = await waitForRetirement(old, CONFIRM_TIMEOUT_MS);
      if (still.length > 0)
        throw new Error(
          `dynamic nginx: old workers ${still.map((w) => w.pid).join(', ')} still accept connections after the reload`,
        );
    },
    versions,
    async restart() {
      await master.stop({ gracefulMs: 5_000, fastMs: 2_000 });
      await prepareControlSocket(controlSocket);
      master = spawn();
      await answering();
    },
    errorLog,
    close,
  };
}
