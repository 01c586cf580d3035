#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import type { Logger } from 'pino';
import { ConfigError, loadConfig, SETTINGS, type RouterConfig, type SettingKey } from './core/config.js';
import { CodedError, errorCodeInfo } from './core/error-codes.js';
import { parseManifest, unreadableManifest, type ManifestObjects } from './core/manifest.js';
import { dropOutputOnceClosed } from './commands/closed-output.js';
import { createLogger, loggerOptionsFrom } from './commands/logger.js';
import { redactTable } from './core/redact.js';
import { buildRouteTable, type RouteTable } from './core/route-table.js';
import { startRouter } from './commands/run.js';
import { DEMO_DEFAULTS, startDemo, withDemoDefaults } from './commands/demo.js';
import { renderNginxConf } from '../nginx/render.js';

// Exit statuses: 0 success, 1 a runtime failure (unreadable manifest, ...), 2 bad usage
// or a bad setting, which is caught before the router does anything. A failure with a code
// exits with the status the error-code catalogue gives it; these are for the others.
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
/** After `run` stopped, how long the process may take to exit by itself. */
const EXIT_WAIT_MS = 2_000;

function packageVersion(): string {
  for (const path of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'k8s-router' && pkg.version) return pkg.version;
    } catch {
      // try the next place: the layout differs between src/ and dist/src/
    }
  }
  return 'unknown';
}

function withSettings(
  command: Command,
  scope: 'all' | 'run' = 'all',
  defaults: Readonly<Record<string, string>> = {},
): Command {
  for (const s of SETTINGS) {
    if (s.scope === 'run' && scope !== 'run') continue;
    command.addOption(
      new Option(
        `${s.flag} <${s.metavar}>`,
        `${s.description} (env ${s.env}, default "${defaults[s.env] ?? s.default}")`,
      ),
    );
  }
  return command;
}

/** Flags as given on the command line, by setting; commander names them in camelCase. */
function settingFlags(options: Record<string, unknown>): Partial<Record<SettingKey, string>> {
  const flags: Partial<Record<SettingKey, string>> = {};
  for (const s of SETTINGS) {
    const attr = s.flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const value = options[attr];
    if (typeof value === 'string') flags[s.key] = value;
  }
  return flags;
}

function configFrom(
  options: Record<string, unknown>,
  env: Readonly<Record<string, string | undefined>> = process.env,
): RouterConfig {
  return loadConfig(env, settingFlags(options));
}

type Start = (
  config: RouterConfig,
  options: { manifest?: string; logger: Logger; print: (text: string) => void; signal: AbortSignal },
) => Promise<{ stop(): Promise<void> }>;

/** `run` and `demo`: start, serve until SIGINT or SIGTERM, then stop everything started. */
async function serveUntilSignal(
  options: Record<string, unknown>,
  env: Readonly<Record<string, string | undefined>>,
  start: Start,
): Promise<void> {
  const config = configFrom(options, env);
  const { level, format } = loggerOptionsFrom(config);
  const logger = createLogger(level, { format });
  // Listening from the start: a signal while the router starts must stop it (and its
  // nginx, in a process group of its own), not kill it. The listeners stay: a second
  // signal must not kill the router mid-drain either.
  const starting = new AbortController();
  let signalled: (name: NodeJS.Signals) => void = () => {};
  const received = new Promise<NodeJS.Signals>((resolve) => (signalled = resolve));
  let signal: NodeJS.Signals | null = null;
  const onSignal = (name: NodeJS.Signals): void => {
    if (signal !== null) logger.warn({ signal: name }, 'already stopping: requests in flight get SHUTDOWN_GRACE_MS');
    signal ??= name;
    starting.abort();
    signalled(name);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let running: { stop(): Promise<void> };
  try {
    running = await start(config, {
      ...(typeof options.manifest === 'string' ? { manifest: options.manifest } : {}),
      logger,
      print: (text) => process.stdout.write(text),
      signal: starting.signal,
    });
  } catch (err) {
    if (signal === null) throw err;
    logger.info({ signal }, 'stopped before serving');
    exitSoon(logger);
    return;
  }
  await received;
  const started = Date.now();
  logger.info(
    { signal, graceMs: config.shutdownGraceMs },
    'stopping: no new connections; requests and WebSockets in flight may finish',
  );
  await running.stop();
  logger.info({ ms: Date.now() - started }, 'stopped');
  exitSoon(logger);
}

/** Everything is closed; a handle someone forgot must not keep the process (and the pod) alive. */
function exitSoon(logger: Logger): void {
  setTimeout(() => {
    logger.warn({ handles: process.getActiveResourcesInfo() }, 'exiting although handles are still open');
    process.exit(process.exitCode ?? 0);
  }, EXIT_WAIT_MS).unref();
}

function readManifest(file: string): ManifestObjects {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw unreadableManifest(file, err);
  }
  return parseManifest(text, file);
}

/** `render` and `routes`: what a manifest becomes, printed. */
function addManifestCommands(program: Command): void {
  manifestCommand(program.command('render'), {
    description: 'print the nginx.conf for the Pods and Secrets of a manifest',
    example: 'k8s-router render --manifest examples/demo/demo.yaml --port 8080',
    print: (table, config) => renderNginxConf(table, config),
  });
  manifestCommand(program.command('routes'), {
    description: 'print, as JSON, the routes and the reasons anything was not routed (API keys redacted)',
    example: 'k8s-router routes --manifest examples/demo/demo.yaml',
    print: (table) => `${JSON.stringify(redactTable(table), null, 2)}\n`,
  });
}

/** `command` reads the Pods and Secrets of `--manifest` and prints what their route table becomes. */
function manifestCommand(
  command: Command,
  what: {
    description: string;
    example: string;
    print: (table: RouteTable, config: RouterConfig) => string;
  },
): void {
  withSettings(
    command
      .description(what.description)
      .requiredOption('--manifest <FILE>', 'YAML or JSON file of Pods and Secrets (a v1 List or several documents)')
      .addHelpText('after', `\nExample:\n  ${what.example}`),
  ).action((options: Record<string, unknown>) => {
    const config = configFrom(options);
    const { pods, secrets } = readManifest(options.manifest as string);
    process.stdout.write(what.print(buildRouteTable(config, pods, secrets), config));
  });
}

/** `run` and `demo`: serve traffic until a signal. */
function addServeCommands(program: Command): void {
  withSettings(
    program
      .command('run')
      .description(
        'serve traffic: follow the cluster (or a manifest) and keep the data plane up to date; in a cluster pod the ' +
          'backend is nginx, elsewhere the in-process proxy (mock mode)',
      )
      .option('--manifest <FILE>', 'follow the Pods and Secrets of this file instead of a cluster')
      .addHelpText(
        'after',
        [
          '',
          'The cluster is the in-cluster service account when its token is mounted, else KUBECONFIG, else ' +
            '~/.kube/config.',
          'Logs go to standard error: JSON lines, or readable lines on a terminal (LOG_FORMAT). SIGINT or ' +
            'SIGTERM drains:',
          'new connections are refused, requests and WebSockets in flight get SHUTDOWN_GRACE_MS to finish, nginx stops',
          'gracefully (SIGQUIT), and the router exits 0. The admin server (/healthz, /readyz, /metrics, ' +
            '/routes, /status,',
          '/nginx.conf and a status page at /) listens on ADMIN_ADDRESS:ADMIN_PORT, 127.0.0.1:9180 by default.',
          'Pods and Secrets are listed in pages of 500 and only the fields the routes need are kept of each.',
          '',
          'Examples:',
          '  k8s-router run --manifest examples/demo/demo.yaml --port 8080',
          '  k8s-router run --backend nginx --manifest examples/demo/demo.yaml --port 8080 --listen-address 127.0.0.1',
          '  KUBECONFIG=~/.kube/config k8s-router run --port 8080 --print-nginx-config true',
        ].join('\n'),
      ),
    'run',
  ).action((options: Record<string, unknown>) => serveUntilSignal(options, process.env, startRouter));

  withSettings(
    program
      .command('demo')
      .description(
        'run the demo on this machine: demo pods on 127.0.0.x, the router following the demo manifest on port 8080, ' +
          'and commands to try (what `npm start` runs)',
      )
      .option('--manifest <FILE>', 'follow this manifest instead of examples/demo/demo.yaml (a copy of it, say)')
      .addHelpText(
        'after',
        [
          '',
          'Every Running pod of the manifest with a 127.x.x.x IP gets a process of the demo app (examples/demo/app/)',
          'listening on its container ports; edits of the manifest apply live, to the routes and to the pods.',
          'The status page is on the admin port. SIGINT or SIGTERM stops the router and every pod it started.',
          '',
          'Examples:',
          '  k8s-router demo',
          '  k8s-router demo --backend nginx --port 18080 --admin-port 19180',
        ].join('\n'),
      ),
    'run',
    DEMO_DEFAULTS,
  ).action((options: Record<string, unknown>) => serveUntilSignal(options, withDemoDefaults(process.env), startDemo));
}

export function buildProgram(): Command {
  const program = new Command('k8s-router')
    .description('Routes HTTP and WebSocket traffic straight to Kubernetes pods chosen by labels and annotations.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  addManifestCommands(program);
  addServeCommands(program);

  for (const command of [program, ...program.commands]) command.exitOverride();
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version end with exit code 0; commander already printed what it had to.
      return err.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`k8s-router: ${err.message}\n`);
      return errorCodeInfo(err.code).exit ?? EXIT_USAGE;
    }
    if (err instanceof CodedError) {
      process.stderr.write(`k8s-router: ${err.message} [${err.code}]\n`);
      return errorCodeInfo(err.code).exit ?? EXIT_FAILURE;
    }
    throw err;
  }
}

dropOutputOnceClosed(process.stdout);
dropOutputOnceClosed(process.stderr);
main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`k8s-router: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = EXIT_FAILURE;
  },
);
