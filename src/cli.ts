#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { ConfigError, loadConfig, SETTINGS, type RouterConfig, type SettingKey } from './core/config.js';
import { ManifestError, parseManifest, type ManifestObjects } from './core/manifest.js';
import { createLogger } from './commands/logger.js';
import { buildRouteTable, redactTable } from './core/route-table.js';
import { startRouter, StartError } from './commands/run.js';
import { renderNginxConf } from '../nginx/render.js';

// Exit statuses: 0 success, 1 a runtime failure (unreadable manifest, ...), 2 bad usage
// or a bad setting, which is caught before the router does anything.
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

function packageVersion(): string {
  for (const path of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'k8s-router' && pkg.version) return pkg.version;
    } catch {
      // try the next place: the layout differs between src/ and dist/src/
    }
  }
  return 'unknown';
}

function withSettings(command: Command, scope: 'all' | 'run' = 'all'): Command {
  for (const s of SETTINGS) {
    if (s.scope === 'run' && scope !== 'run') continue;
    command.addOption(new Option(`${s.flag} <${s.metavar}>`, `${s.description} (env ${s.env}, default "${s.default}")`));
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

function configFrom(options: Record<string, unknown>): RouterConfig {
  return loadConfig(process.env, settingFlags(options));
}

function readManifest(file: string): ManifestObjects {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new ManifestError(file, `cannot be read: ${reason}`);
  }
  return parseManifest(text, file);
}

export function buildProgram(): Command {
  const program = new Command('k8s-router')
    .description('Routes HTTP and WebSocket traffic straight to Kubernetes pods chosen by labels and annotations.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  withSettings(
    program
      .command('render')
      .description('print the nginx.conf for the Pods and Secrets of a manifest')
      .requiredOption('--manifest <FILE>', 'YAML or JSON file of Pods and Secrets (a v1 List or several documents)')
      .addHelpText('after', '\nExample:\n  k8s-router render --manifest examples/demo.yaml --port 8080'),
  ).action((options: Record<string, unknown>) => {
    const config = configFrom(options);
    const { pods, secrets } = readManifest(options.manifest as string);
    const table = buildRouteTable(config, pods, secrets);
    process.stdout.write(renderNginxConf(table, config));
  });

  withSettings(
    program
      .command('routes')
      .description('print, as JSON, the routes and the reasons anything was not routed (API keys redacted)')
      .requiredOption('--manifest <FILE>', 'YAML or JSON file of Pods and Secrets (a v1 List or several documents)')
      .addHelpText('after', '\nExample:\n  k8s-router routes --manifest examples/demo.yaml'),
  ).action((options: Record<string, unknown>) => {
    const config = configFrom(options);
    const { pods, secrets } = readManifest(options.manifest as string);
    const table = redactTable(buildRouteTable(config, pods, secrets));
    process.stdout.write(`${JSON.stringify(table, null, 2)}\n`);
  });

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
          'The cluster is the in-cluster service account when its token is mounted, else KUBECONFIG, else ~/.kube/config.',
          'Pods and Secrets are listed in pages of 500 and only the fields the routes need are kept of each.',
          'Logs are JSON lines on standard error. SIGINT or SIGTERM stops the router and its nginx.',
          '',
          'Examples:',
          '  k8s-router run --manifest examples/demo.yaml --port 8080',
          '  k8s-router run --backend nginx --manifest examples/demo.yaml --port 8080 --listen-address 127.0.0.1',
          '  KUBECONFIG=~/.kube/config k8s-router run --port 8080 --print-nginx-config true',
        ].join('\n'),
      ),
    'run',
  ).action(async (options: Record<string, unknown>) => {
    const config = configFrom(options);
    const logger = createLogger(config.logLevel);
    const router = await startRouter(config, {
      ...(typeof options.manifest === 'string' ? { manifest: options.manifest } : {}),
      logger,
      print: (text) => process.stdout.write(text),
    });
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
    });
    logger.info({ signal }, 'stopping');
    await router.stop();
  });

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
      return EXIT_USAGE;
    }
    if (err instanceof ManifestError || err instanceof StartError) {
      process.stderr.write(`k8s-router: ${err.message} [${err.code}]\n`);
      return EXIT_FAILURE;
    }
    throw err;
  }
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`k8s-router: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = EXIT_FAILURE;
  },
);
