import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { findNginxBinary } from '../../nginx/binary.js';
import { unsafeDirectoryProblem } from '../../nginx/files.js';
import { createConfigPreview } from '../../nginx/preview.js';
import { createNginxDataPlane } from '../../nginx/process.js';
import { renderNginxConf } from '../../nginx/render.js';
import { startProxy } from '../../proxy/server.js';
import { ConfigError, SETTINGS, settingCode, type RouterConfig } from '../core/config.js';
import { createController, type Controller } from '../control/controller.js';
import type { DataPlane } from '../core/data-plane.js';
import { SERVICE_ACCOUNT_TOKEN } from '../sources/kube-client.js';
import { createKubeSource, loadKubeConfig } from '../sources/kube-source.js';
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
}

export interface RunningRouter {
  backend: 'nginx' | 'proxy';
  /** The port the data plane listens on. */
  port: number;
  controller: Controller;
  stop(): Promise<void>;
}

/** A failure to start that is not a bad setting: no cluster, a port in use, ... (exit 1). */
export class StartError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'StartError';
  }
}

function settingError(key: keyof RouterConfig, value: string, problem: string): ConfigError {
  const s = SETTINGS.find((candidate) => candidate.key === key);
  if (s === undefined) throw new Error(`no setting ${key}`);
  return new ConfigError(settingCode(s), s.env, value, problem);
}

function objectSource(config: RouterConfig, options: RunOptions): ObjectSource {
  if (options.manifest !== undefined) return createManifestSource({ file: options.manifest, logger: options.logger });
  let kubeConfig;
  try {
    kubeConfig = loadKubeConfig(options.serviceAccountToken === undefined ? {} : { serviceAccountToken: options.serviceAccountToken });
  } catch (err) {
    throw new StartError('KR_NO_CLUSTER', `${(err as Error).message}; give a cluster with KUBECONFIG, or objects with --manifest FILE`);
  }
  return createKubeSource({
    kubeConfig,
    labelSelector: config.labelSelector.text,
    secretName: config.apiKeySecret.name,
    logger: options.logger,
    backoff: { initialMs: Math.min(500, config.watchBackoffMaxMs), maxMs: config.watchBackoffMaxMs },
  });
}

async function nginxDataPlane(config: RouterConfig, logger: Logger): Promise<DataPlane> {
  const binary = findNginxBinary(config.nginxBinary);
  if (binary === null) throw settingError('nginxBinary', config.nginxBinary, 'no executable nginx there (looked in PATH, /usr/sbin and /usr/local/sbin)');
  const prefix = config.nginxPrefix === 'auto' ? join(tmpdir(), `k8s-router-${config.port}`) : config.nginxPrefix;
  await mkdir(prefix, { recursive: true, mode: 0o755 });
  const problem = await unsafeDirectoryProblem(prefix);
  if (problem !== null) throw settingError('nginxPrefix', prefix, `the directory ${problem}; it will hold API keys`);
  return createNginxDataPlane({
    nginxBinary: binary,
    prefix,
    render: (table, runtime) => renderNginxConf(table, { ...config, runtime }),
    files: config.nginxConfig === 'auto' ? {} : { conf: config.nginxConfig },
    ...(config.nginxStatusPort === 'auto' ? {} : { statusPort: config.nginxStatusPort }),
    logger,
  });
}

async function proxyDataPlane(config: RouterConfig, logger: Logger): Promise<DataPlane & { port: number }> {
  try {
    return await startProxy({ port: config.port, host: config.listenAddress, apiKeyHeader: config.apiKeyHeader, upstreamKeepalive: config.upstreamKeepalive, logger });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'the port is in use' : code === 'EACCES' ? 'permission denied (ports below 1024 need root)' : (err as Error).message;
    throw new StartError('KR_LISTEN_FAILED', `cannot listen on ${config.listenAddress}:${config.port}: ${why}`);
  }
}

export async function startRouter(config: RouterConfig, options: RunOptions): Promise<RunningRouter> {
  const { logger } = options;
  const inCluster = existsSync(options.serviceAccountToken ?? SERVICE_ACCOUNT_TOKEN);
  const backend = config.backend === 'auto' ? (inCluster ? 'nginx' : 'proxy') : config.backend;

  // Settings and sources are checked before anything listens or starts.
  const source = objectSource(config, options);
  const dataPlanes: DataPlane[] = [];
  let port = config.port;
  if (backend === 'nginx') {
    dataPlanes.push(await nginxDataPlane(config, logger));
  } else {
    const proxy = await proxyDataPlane(config, logger);
    port = proxy.port;
    dataPlanes.push(proxy);
  }
  if (config.printNginxConfig) dataPlanes.push(createConfigPreview(config, options.print));

  const controller = createController({
    config,
    source,
    dataPlanes,
    holdOffMs: config.holdOffMs,
    maxDelayMs: config.maxDelayMs,
    logger,
  });
  const closeAll = async (): Promise<void> => {
    await controller.stop();
    await Promise.all(dataPlanes.map((dp) => dp.close()));
  };
  try {
    await controller.start();
  } catch (err) {
    await closeAll();
    throw err;
  }
  logger.info({ backend, port, source: options.manifest ?? 'cluster' }, 'k8s-router is serving');
  return { backend, port, controller, stop: closeAll };
}
