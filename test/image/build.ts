import { createWriteStream, existsSync } from 'node:fs';
import { lastLines, runCommand } from './commands.js';
import { imageId, PODMAN_GLOBAL } from './podman.js';

// `podman build` of the Dockerfile, as a user would run it, with what this machine needs:
// the CA bundle npm trusts (where a registry mirror or proxy has its own CA), the limits
// podman can grant, and the host's network for RUN steps (nothing to set up: no bridge,
// NAT or DNS of podman's own).

/** The id of the build secret the Dockerfile's `npm ci` steps read the extra CA bundle from. */
export const NPM_CA_SECRET = 'npm-ca';

/** The extra CA bundle this machine's npm trusts, or null: NODE_EXTRA_CA_CERTS, else npm's cafile. */
export async function npmExtraCa(): Promise<string | null> {
  const fromEnv = process.env.NODE_EXTRA_CA_CERTS;
  if (fromEnv !== undefined && fromEnv !== '' && existsSync(fromEnv)) return fromEnv;
  const cafile = (await runCommand('npm', ['config', 'get', 'cafile'], { timeoutMs: 60_000 })).stdout.trim();
  return cafile !== '' && cafile !== 'null' && cafile !== 'undefined' && existsSync(cafile) ? cafile : null;
}

export interface Built {
  ms: number;
  /** Whether the bundle went in as the npm-ca build secret. */
  ca: string | null;
}

/**
 * Builds `context`'s Dockerfile as `tag`, the whole log in `logFile`. The base image must be
 * in podman's storage already (nothing is pulled). The image `tag` named before, if
 * another, is removed: each change would otherwise leave a few hundred MB behind.
 */
export async function buildImage(
  context: string,
  tag: string,
  ulimits: readonly string[],
  logFile: string,
): Promise<Built> {
  const ca = await npmExtraCa();
  const previous = await imageId(tag);
  const log = createWriteStream(logFile);
  const args = [
    ...PODMAN_GLOBAL,
    'build',
    '--runtime=runc',
    '--network=host',
    '--pull=never',
    ...ulimits,
    // A build secret: mounted for the RUN steps that ask for it, never stored in a layer.
    ...(ca === null ? [] : [`--secret=id=${NPM_CA_SECRET},src=${ca}`]),
    `--tag=${tag}`,
    context,
  ];
  log.write(`podman ${args.join(' ')}\n`);
  const result = await runCommand('podman', args, { timeoutMs: 1_200_000, onOutput: (chunk) => log.write(chunk) });
  await new Promise((resolve) => log.end(resolve));
  if (result.exit !== 0) {
    throw new Error(
      `podman build ended with ${result.exit} after ${result.ms} ms (whole log: ${logFile}):\n` +
        lastLines(`${result.stdout}\n${result.stderr}`, 40),
    );
  }
  const built = await imageId(tag);
  if (previous !== null && previous !== built)
    await runCommand('podman', [...PODMAN_GLOBAL, 'rmi', previous], { timeoutMs: 120_000 });
  return { ms: result.ms, ca };
}
