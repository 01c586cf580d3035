import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { RouterConfig } from '../core/config.js';
import { createManifestSource } from '../sources/manifest-source.js';
import { createDemoPods, demoPodSpecs, type DemoPodFailure, type DemoPods } from './demo-pods.js';
import { listenProblem, startRouter, StartError, type RunningRouter } from './run.js';

// `k8s-router demo`: the demo pods, the router following the demo manifest, and the
// commands that show what it does. Everything the demo starts, it stops.

/** Settings the demo defaults differently from `run`: a local port, loopback only, the in-process proxy. */
export const DEMO_DEFAULTS: Readonly<Record<string, string>> = {
  PORT: '8080',
  LISTEN_ADDRESS: '127.0.0.1',
  BACKEND: 'proxy',
};

/** The environment with the demo's defaults where a variable is unset (or empty, which counts as unset). */
export function withDemoDefaults(
  env: Readonly<Record<string, string | undefined>>,
): Record<string, string | undefined> {
  const out = { ...env };
  for (const [name, value] of Object.entries(DEMO_DEFAULTS))
    if (out[name] === undefined || out[name] === '') out[name] = value;
  return out;
}

export interface DemoFiles {
  manifest: string;
  app: string;
  wsClient: string;
}

/** examples/demo/ of the checkout this code runs from (src/commands/ or dist/src/commands/). */
export function demoFiles(): DemoFiles | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let up = 0; up < 4; up++, dir = dirname(dir)) {
    const demo = join(dir, 'examples', 'demo');
    const files = {
      manifest: join(demo, 'demo.yaml'),
      app: join(demo, 'app', 'server.mjs'),
      wsClient: join(demo, 'ws-client.mjs'),
    };
    if (Object.values(files).every((f) => existsSync(f))) return files;
  }
  return null;
}

/** How to reach an address that may be a wildcard, for a URL. */
function urlHost(address: string): string {
  if (address === '*' || address === '0.0.0.0' || address === '::') return '127.0.0.1';
  return address.includes(':') ? `[${address}]` : address;
}

/** A path as short as it can be from where the user is. */
function shortPath(file: string, cwd: string): string {
  const rel = relative(cwd, file);
  return rel.startsWith('..') || isAbsolute(rel) ? file : rel;
}

export interface DemoCommandsInput {
  config: Pick<RouterConfig, 'listenAddress' | 'apiKeyHeader' | 'adminAddress'>;
  port: number;
  adminPort: number | null;
  backend: string;
  manifest: string;
  wsClient: string;
  pods: number;
  cwd: string;
}

/**
 * The sticky route: three requests from one client address, all answered by one chat pod;
 * from another address, by the other pod (the two addresses hash to different pods of the
 * demo manifest). curl's --interface sets the address, where the router listens on loopback.
 */
function affinityCommands(base: string, listenAddress: string): string[] {
  const request = `-H 'Host: chat.k8s.local' '${base}/?n=[1-3]'`;
  if (!listenAddress.startsWith('127.')) {
    return [
      'Session affinity: three requests from one client address, all answered by the same chat pod',
      `  curl -s ${request}`,
    ];
  }
  return [
    'Session affinity: every request from one client address goes to the same chat pod ' +
      '(curl --interface sets the address)',
    `  curl -s --interface 127.0.0.2 ${request}`,
    `  curl -s --interface 127.0.0.4 ${request}`,
  ];
}

/** Pure: what the demo prints once it serves. The first command shows round robin. */
export function demoCommands(input: DemoCommandsInput): string {
  const base = `http://${urlHost(input.config.listenAddress)}:${input.port}`;
  const ws = `ws://${urlHost(input.config.listenAddress)}:${input.port}/ws`;
  const key = input.config.apiKeyHeader;
  const plane = input.backend === 'nginx' ? 'managed nginx' : 'in-process proxy';
  const lines = [
    '',
    `k8s-router demo: ${input.pods} demo pods run on 127.0.0.x, and the ${plane} routes to them on ${base}`,
    `following ${shortPath(input.manifest, input.cwd)}: edit and save it, the routes (and the pods) follow.`,
    '',
    'Round robin: three requests in one command, each answered by the next shop pod',
    `  curl -s -H 'Host: shop.k8s.local' '${base}/?n=[1-3]'`,
    'A known host without a route for the path: 404',
    `  curl -i -H 'Host: billing.k8s.local' ${base}/nothing-here`,
    'An unknown host: the connection is closed without an answer (curl: Empty reply from server)',
    `  curl -i -H 'Host: unknown.k8s.local' ${base}/`,
    "A route locked by the billing namespace's API key: 403 without it, 200 with it (the base64 text of the Secret)",
    `  curl -i -H 'Host: billing.k8s.local' ${base}/api`,
    `  curl -i -H 'Host: billing.k8s.local' -H '${key}: ZGVtby1zZWNyZXQ=' ${base}/api`,
    'A WebSocket through the router, echoed by a shop pod',
    `  node ${shortPath(input.wsClient, input.cwd)} ${ws} --host shop.k8s.local hello`,
    ...affinityCommands(base, input.config.listenAddress),
  ];
  if (input.adminPort !== null) {
    lines.push(
      'Status page: routes, pods, and why a pod is not routed',
      `  http://${urlHost(input.config.adminAddress)}:${input.adminPort}/`,
    );
  }
  lines.push('', 'Ctrl-C stops the demo and everything it started.', '');
  return lines.join('\n');
}

/** Fails with one clear line when `port` cannot be bound, before anything is started. */
async function checkPortFree(address: string, port: number, what: string): Promise<void> {
  const host = address === '*' ? '0.0.0.0' : address;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err) =>
      reject(
        new StartError('KR_LISTEN_FAILED', `cannot listen on ${address}:${port} (${what}): ${listenProblem(err)}`),
      ),
    );
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve()));
  });
}

function podFailureError(failure: DemoPodFailure): StartError {
  const where = `${failure.spec.ip}:${failure.port ?? failure.spec.ports.join(',')}`;
  const why =
    failure.code === 'EXITED' || failure.code === 'TIMEOUT'
      ? failure.message
      : listenProblem(Object.assign(new Error(failure.message), { code: failure.code }));
  return new StartError('KR_LISTEN_FAILED', `cannot listen on ${where} (demo pod ${failure.spec.key}): ${why}`);
}

export interface DemoOptions {
  /** The manifest to follow; the bundled demo manifest by default. */
  manifest?: string;
  logger: Logger;
  /** Where the commands (and PRINT_NGINX_CONFIG) are written. */
  print: (text: string) => void;
  /** Aborted by a signal that arrives while the demo starts. */
  signal?: AbortSignal;
}

export interface RunningDemo {
  router: RunningRouter;
  pods: DemoPods;
  stop(): Promise<void>;
}

export async function startDemo(config: RouterConfig, options: DemoOptions): Promise<RunningDemo> {
  const { logger } = options;
  const files = demoFiles();
  if (files === null)
    throw new StartError('KR_NO_DEMO', 'the demo needs examples/demo/ of a k8s-router checkout, and it is not here');
  const manifest = options.manifest ?? files.manifest;

  await checkPortFree(config.listenAddress, config.port, 'PORT');
  if (typeof config.adminPort === 'number' && config.adminPort !== 0)
    await checkPortFree(config.adminAddress, config.adminPort, 'admin server, ADMIN_PORT');

  // The pods follow the manifest on their own watch of it, beside the router's.
  const pods = createDemoPods({ app: files.app, logger });
  const podSource = createManifestSource({ file: manifest, logger });
  const specs = (): ReturnType<typeof demoPodSpecs> => demoPodSpecs(podSource.snapshot().pods, config.pathsAnnotation);
  const stopPods = async (): Promise<void> => {
    await podSource.stop();
    await pods.stop();
  };
  await podSource.start(() => {
    void pods.sync(specs()).then((failures) => {
      for (const f of failures) {
        const error = podFailureError(f);
        logger.error({ code: error.code, err: error.message }, 'demo pod cannot start');
      }
    });
  });

  let router: RunningRouter;
  try {
    const failures = await pods.sync(specs());
    const first = failures[0];
    if (first !== undefined) throw podFailureError(first);
    router = await startRouter(config, {
      manifest,
      logger,
      print: options.print,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (err) {
    await stopPods();
    throw err;
  }
  options.print(
    demoCommands({
      config,
      port: router.port,
      adminPort: router.admin?.port ?? null,
      backend: router.backend,
      manifest,
      wsClient: files.wsClient,
      pods: pods.pids().length,
      cwd: process.cwd(),
    }),
  );
  return {
    router,
    pods,
    async stop() {
      await router.stop();
      await stopPods();
    },
  };
}
