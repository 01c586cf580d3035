import { readFile } from 'node:fs/promises';
import { commandOutput, runCommand, type CommandOptions } from './commands.js';

// podman as the image test uses it: as root, with runc (what runs here; CI installs it
// with podman), and with resource limits podman can actually grant on this machine.

/** podman's global flags for every command: the OCI runtime. */
export const PODMAN_GLOBAL = ['--runtime', 'runc'];

export function podman(args: readonly string[], options: CommandOptions): Promise<string> {
  return commandOutput('podman', [...PODMAN_GLOBAL, ...args], options);
}

const INSTALL_HINT = 'Debian: apt-get install -y podman runc mmdebstrap';

/** One line saying why podman cannot run containers here, or null when it can. */
export async function podmanProblem(): Promise<string | null> {
  const version = await runCommand('podman', ['--version'], { timeoutMs: 30_000 });
  if (version.exit !== 0)
    return `podman does not run here (${firstLine(version.stderr) || `exit ${version.exit}`}); ${INSTALL_HINT}`;
  const runc = await runCommand('runc', ['--version'], { timeoutMs: 30_000 });
  if (runc.exit !== 0) return `runc, the OCI runtime the image test uses, does not run here; ${INSTALL_HINT}`;
  const info = await runCommand('podman', [...PODMAN_GLOBAL, 'info', '--format', '{{.Host.OCIRuntime.Name}}'], {
    timeoutMs: 60_000,
  });
  if (info.exit !== 0)
    return `podman cannot run containers here: ${firstLine(info.stderr) || `podman info exited ${info.exit}`}`;
  return null;
}

function firstLine(text: string): string {
  return text.trim().split('\n')[0] ?? '';
}

/**
 * `--ulimit` flags for limits podman can grant. By default podman 4 asks runc for 1,048,576
 * open files and processes whatever this process may have, and lowers its own process
 * limit to kernel.pid_max; where the hard limits are lower (here 20,000 open files and
 * 32,768 processes) runc cannot set them and the container does not start ("error setting
 * rlimit type 7: operation not permitted"). The container gets what podman itself has.
 */
export async function grantableUlimits(): Promise<string[]> {
  const limits = await readFile('/proc/self/limits', 'utf8');
  const hard = (what: string): number => {
    const value = new RegExp(`^${what}\\s+\\S+\\s+(\\S+)`, 'm').exec(limits)?.[1];
    if (value === undefined) throw new Error(`no "${what}" in /proc/self/limits:\n${limits}`);
    return value === 'unlimited' ? Number.POSITIVE_INFINITY : Number(value);
  };
  const pidMax = Number(await readFile('/proc/sys/kernel/pid_max', 'utf8'));
  const nofile = Math.min(hard('Max open files'), 1_048_576);
  const nproc = Math.min(hard('Max processes'), pidMax);
  return [`--ulimit=nofile=${nofile}:${nofile}`, `--ulimit=nproc=${nproc}:${nproc}`];
}

/** The image's ID, or null when there is no image of that name. */
export async function imageId(name: string): Promise<string | null> {
  const result = await runCommand('podman', [...PODMAN_GLOBAL, 'image', 'inspect', '--format', '{{.Id}}', name], {
    timeoutMs: 60_000,
  });
  return result.exit === 0 ? result.stdout.trim() : null;
}

/** The image's size in bytes, all layers, as `podman images` counts it. */
export async function imageSize(name: string): Promise<number> {
  return Number((await podman(['image', 'inspect', '--format', '{{.Size}}', name], { timeoutMs: 60_000 })).trim());
}

/** podman's (and Docker's) name for a short image name: `node:24` → `docker.io/library/node:24`. */
export function qualifiedImageName(name: string): string {
  const [first = '', ...rest] = name.split('/');
  if (rest.length === 0) return `docker.io/library/${name}`;
  return /[.:]/.test(first) || first === 'localhost' ? name : `docker.io/${name}`;
}

export const megabytes = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB`;
