import { accessSync, constants, existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { findNginxBinary } from '../../nginx/binary.js';
import { unsafeDirectoryProblem } from '../../nginx/files.js';
import { createConfigPreview } from '../../nginx/preview.js';
import type { TableDelivery } from '../../nginx/delivery.js';
import { dynamicDelivery } from '../../nginx/dynamic-delivery.js';
import { bundledLuaDir, findLuaModules } from '../../nginx/lua-modules.js';
import {
  createNginxDataPlane,
  nginxManagerOptionsFrom,
  resolveFiles,
  type NginxDataPlane,
  type NginxFiles,
} from '../../nginx/process.js';
import { nginxWorkerIdentity, prepareWorkerAccess } from '../../nginx/worker-user.js';
import { IncrementalNginxRenderer } from '../../nginx/incremental-render.js';
import { proxyOptionsFrom } from '../../proxy/proxy-options.js';
import { startProxy, type ProxyDataPlane } from '../../proxy/server.js';
import { trackApplies, type TrackedPlane } from '../admin/apply-tracker.js';
import { adminServerOptionsFrom, startAdminServer, type AdminServer } from '../admin/server.js';
import { unreadableManifest } from '../core/manifest.js';
import { ConfigError, SETTINGS, settingCode, type ResolvedBackend, type RouterConfig } from '../core/config.js';
import { CodedError, type ErrorCode } from '../core/error-codes.js';
import { createController, type Controller } from '../control/controller.js';
import type { DataPlane } from '../core/data-plane.js';
import type { EventSink } from '../events/event-sink.js';
import { eventSinkFor } from '../events/events-for-router.js';
import { SERVICE_ACCOUNT_TOKEN } from '../sources/kube-client.js';
import { createKubeSource, kubeSourceOptionsFrom, loadKubeConfig } from '../sources/kube-source.js';
import { createManifestSource } from '../sources/manifest-source.js';
import type { ObjectSource } from '../sources/source.js';

// `k8s-router run`: a source of objects, the controller, and the data plane, wired
// together. Everything here is an edge: files, processes, sockets.

export interface RunOptions {
  /** Read Pods and Secrets from this file instead of the cluster. */
  manifest?: string;
  logger: Logger;
  /** Where PRINT_NGINX_CONFIG writes. */
  print: (text: string) => void;
  /** Overrides for tests: where the service account token would be. */
  serviceAccountToken?: string;
  /** Aborted by a signal that arrives while the router starts: it stops instead of serving. */
  signal?: AbortSignal;
}

export interface RunningRouter {
  backend: ResolvedBackend;
  /** The port the data plane listens on. */
  port: number;
  controller: Controller;
  /** The admin server, unless ADMIN_PORT is off. */
  admin: AdminServer | null;
  /** Kubernetes Events for rejected pods (off, with the reason in its stats, without a cluster). */
  events: EventSink;
  stop(): Promise<void>;
}

/** A failure to start that is not a bad setting: no cluster, a port in use, ... (exit 1). */
export class StartError extends CodedError {
  constructor(code: ErrorCode, message: string) {
    super(code, message);
    this.name = 'StartError';
  }
}

/** EADDRINUSE and friends, in words. */
export function listenProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EADDRINUSE'
    ? 'the port is in use'
    : code === 'EACCES'
      ? 'permission denied (ports below 1024 need root)'
      : code === 'EADDRNOTAVAIL'
        ? 'no such address on this machine'
        : (err as Error).message;
}

function settingError(key: keyof RouterConfig, value: string, problem: string): ConfigError {
  const s = SETTINGS.find((candidate) => candidate.key === key);
  if (s === undefined) throw new Error(`no setting ${key}`);
  return new ConfigError(settingCode(s), s.env, value, problem);
}

/** The source, and the cluster's configuration when it is a cluster (for the events sink). */
function objectSource(
  config: RouterConfig,
  options: RunOptions,
): { source: ObjectSource; kubeConfig: KubeConfig | null } {
  if (options.manifest !== undefined) {
    // Read (in a worker) only once the planes are up: a file that is not there is said now,
    // before a port that is taken or an nginx that cannot start hides it.
    try {
      accessSync(options.manifest, constants.R_OK);
    } catch (err) {
      throw unreadableManifest(options.manifest, err);
    }
    return { source: createManifestSource({ file: options.manifest, logger: options.logger }), kubeConfig: null };
  }
  let kubeConfig;
  try {
    kubeConfig = loadKubeConfig(
      options.serviceAccountToken === undefined ? {} : { serviceAccountToken: options.serviceAccountToken },
    );
  } catch (err) {
    throw new StartError(
      'KR_NO_CLUSTER',
      `${(err as Error).message}; give a cluster with KUBECONFIG, or objects with --manifest FILE`,
    );
  }
  const source = createKubeSource({ ...kubeSourceOptionsFrom(config), kubeConfig, logger: options.logger });
  return { source, kubeConfig };
}

async function nginxDataPlane(config: RouterConfig, logger: Logger): Promise<NginxDataPlane> {
  const binary = findNginxBinary(config.nginxBinary);
  if (binary === null)
    throw settingError(
      'nginxBinary',
      config.nginxBinary,
      'no executable nginx there (looked in PATH, /usr/sbin and /usr/local/sbin)',
    );
  const prefix = config.nginxPrefix === 'auto' ? join(tmpdir(), `k8s-router-${config.port}`) : config.nginxPrefix;
  await mkdir(prefix, { recursive: true, mode: 0o755 });
  const problem = await unsafeDirectoryProblem(prefix);
  if (problem !== null) throw settingError('nginxPrefix', prefix, `the directory ${problem}; it will hold API keys`);
  const files = resolveFiles(prefix, config.nginxConfig === 'auto' ? {} : { conf: config.nginxConfig });
  // As root, nginx's workers run as nobody: they must reach their temporary files, or
  // nginx fails large requests and downloads with nothing but a line in its error log.
  const workerIdentity = await nginxWorkerIdentity().catch((err: Error) => {
    throw settingError('nginxPrefix', prefix, err.message);
  });
  if (workerIdentity !== null) {
    await mkdir(files.tempDir, { recursive: true });
    const opened = await prepareWorkerAccess(prefix, files.tempDir, workerIdentity).catch((err: Error) => {
      throw settingError('nginxPrefix', prefix, err.message);
    });
    if (opened.length > 0)
      logger.info(
        { user: workerIdentity.user, directories: opened },
        "let nginx's workers through to their temporary directory",
      );
  }
  const delivery = config.nginxMode === 'dynamic' ? await dynamicTableDelivery(config, binary, prefix, files) : null;
  // Keeps the blocks of unchanged hosts between tables: a change costs what it touches.
  const renderer = new IncrementalNginxRenderer();
  return createNginxDataPlane({
    nginxBinary: binary,
    prefix,
    ...(delivery === null
      ? { render: (table, runtime) => renderer.pieces(table, { ...config, runtime }) }
      : { delivery }),
    files: config.nginxConfig === 'auto' ? {} : { conf: config.nginxConfig },
    workerIdentity,
    ...(config.nginxStatusPort === 'auto' ? {} : { statusPort: config.nginxStatusPort }),
    ...nginxManagerOptionsFrom(config),
    logger,
  });
}

/**
 * NGINX_MODE=dynamic: one nginx.conf for every table, and each table sent to Lua in nginx
 * over a unix socket in the prefix. Refuses to start, with the reason, when nginx has no
 * Lua module or the prefix cannot hold the socket.
 */
async function dynamicTableDelivery(
  config: RouterConfig,
  binary: string,
  prefix: string,
  files: NginxFiles,
): Promise<TableDelivery> {
  const lua = await findLuaModules(binary);
  if (!lua.found) throw settingError('nginxMode', config.nginxMode, lua.problem);
  const controlSocket = join(prefix, 'control', 'table.sock');
  const delivery = dynamicDelivery({
    render: config,
    controlSocket,
    luaModules: lua.modules,
    luaDir: bundledLuaDir(),
    timeoutMs: config.nginxReloadTimeoutMs,
  });
  try {
    // The config is the same for every table: rendered once here, so a prefix it cannot use is said at start.
    delivery.config(
      { routes: [], rejections: [] },
      { pidFile: files.pid, errorLog: files.errorLog, accessLog: files.accessLog, tempDir: files.tempDir },
    );
  } catch (err) {
    throw settingError('nginxPrefix', prefix, `dynamic mode cannot use it: ${(err as Error).message}`);
  }
  return delivery;
}

async function proxyDataPlane(config: RouterConfig, logger: Logger): Promise<ProxyDataPlane> {
  try {
    return await startProxy({ ...proxyOptionsFrom(config), logger });
  } catch (err) {
    if (err instanceof CodedError) throw err;
    throw new StartError(
      'KR_LISTEN_FAILED',
      `cannot listen on ${config.listenAddress}:${config.port}: ${listenProblem(err)}`,
    );
  }
}

async function adminServer(
  config: RouterConfig,
  view: Parameters<typeof startAdminServer>[0],
  logger: Logger,
): Promise<AdminServer | null> {
  const settings = adminServerOptionsFrom(config);
  if (settings === null) return null;
  try {
    return await startAdminServer(view, { ...settings, logger });
  } catch (err) {
    throw new StartError(
      'KR_LISTEN_FAILED',
      `cannot listen on ${config.adminAddress}:${config.adminPort} (admin server, ADMIN_PORT): ${listenProblem(err)}`,
    );
  }
}

export async function startRouter(config: RouterConfig, options: RunOptions): Promise<RunningRouter> {
  const { logger } = options;
  const inCluster = existsSync(options.serviceAccountToken ?? SERVICE_ACCOUNT_TOKEN);
  const backend = config.backend === 'auto' ? (inCluster ? 'nginx' : 'proxy') : config.backend;

  // Settings and sources are checked before anything listens or starts.
  const { source, kubeConfig } = objectSource(config, options);
  const dataPlanes: DataPlane[] = [];
  // The controller applies tables through trackers, which the admin server reads.
  const planes: TrackedPlane[] = [];
  const appliedVersion = (): number | null => controller.latest()?.version ?? null;
  let port = config.port;
  if (backend === 'nginx') {
    const nginx = await nginxDataPlane(config, logger);
    dataPlanes.push(nginx);
    planes.push(trackApplies('nginx', nginx, appliedVersion));
  } else {
    const proxy = await proxyDataPlane(config, logger);
    port = proxy.port;
    dataPlanes.push(proxy);
    planes.push(trackApplies('proxy', proxy, appliedVersion));
  }
  if (config.printNginxConfig) {
    const preview = createConfigPreview(config, options.print);
    dataPlanes.push(preview);
    planes.push(trackApplies('nginx-preview', preview, appliedVersion));
  }

  const controller = createController({
    config,
    source,
    dataPlanes: planes.map((p) => p.tracked),
    logger,
  });
  // Subscribed before the start, so that the first table's rejections are reported too.
  const events = eventSinkFor(config, kubeConfig, logger);
  controller.subscribe(events.listener);
  const closePlanes = (): Promise<unknown> => Promise.all(dataPlanes.map((dp) => dp.close()));
  let admin: AdminServer | null;
  try {
    // Up before the first list, so probes get answers (503 until the table serves).
    admin = await adminServer(
      config,
      { config, backend, port, controller, source, manifest: options.manifest ?? null, planes, events },
      logger,
    );
  } catch (err) {
    await Promise.all([events.stop(), closePlanes()]);
    throw err;
  }
  /** Drains: no new table, no new connection; what is in flight gets SHUTDOWN_GRACE_MS. */
  let closing: Promise<void> | null = null;
  const closeAll = (): Promise<void> =>
    (closing ??= (async () => {
      admin?.markStopping();
      await controller.stop();
      await Promise.all([events.stop(), closePlanes()]);
      await admin?.close();
    })());
  // A signal while the first list is still coming (an API server that does not answer,
  // say) stops the source, which ends the start below.
  const abort = (): void => void closeAll();
  options.signal?.addEventListener('abort', abort, { once: true });
  try {
    if (options.signal?.aborted === true) throw new StartError('KR_STOPPED', 'stopped by a signal before serving');
    await controller.start();
  } catch (err) {
    await closeAll();
    throw err;
  } finally {
    options.signal?.removeEventListener('abort', abort);
  }
  logger.info(
    { backend, port, source: options.manifest ?? 'cluster', adminPort: admin?.port ?? 'off' },
    'k8s-router is serving',
  );
  return { backend, port, controller, admin, events, stop: closeAll };
}
