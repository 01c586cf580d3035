import { chmod, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commandLine } from '../../nginx/workers.js';
import { NGINX_BINARY } from './nginx-check.js';

// A stand-in for the nginx binary (NGINX_BINARY / the manager's nginxBinary) that runs the
// real nginx but misbehaves on demand, so that faults happen exactly when a test wants:
//
// - refuseChecks(reason): every `nginx -t` fails with `reason` until allowChecks();
// - hideNextStarts(n): the next n nginx masters start with a copy of the config whose
//   status server reports another config version. They serve the same routes, but the
//   manager can never confirm them: a test can kill such a master at leisure and know it
//   died "before its restart was confirmed", with its workers running and holding the ports.
//
// The state lives in files next to the script, so it works for a manager in the test
// process and for a router run as a child process alike.

export interface NginxWrapper {
  /** The executable to pass as nginxBinary / NGINX_BINARY. */
  readonly path: string;
  refuseChecks(reason?: string): Promise<void>;
  allowChecks(): Promise<void>;
  hideNextStarts(count: number): Promise<void>;
  /** How many times nginx was started as a master (not counting `-t`). */
  starts(): Promise<number>;
  /** How many `nginx -t` checks ran. */
  checks(): Promise<number>;
  /** When each `nginx -t` started, in ms since the epoch. */
  checkTimes(): Promise<number[]>;
  remove(): Promise<void>;
}

/** The config version such a hidden master's status server reports. */
export const HIDDEN_VERSION = 'hidden-from-the-manager';

const script = (state: string, nginx: string): string => `#!/bin/sh
state=${JSON.stringify(state)}
count() { n=$(cat "$state/$1" 2>/dev/null || echo 0); echo $((n + 1)) > "$state/$1"; }
if [ "$1" = "-t" ]; then
  count checks
  date +%s%3N >> "$state/check-times"
  if [ -f "$state/refuse" ]; then cat "$state/refuse" >&2; exit 1; fi
  exec ${JSON.stringify(nginx)} "$@"
fi
count starts
# Arguments of a master: -p PREFIX -c CONF -e LOG
hide=$(cat "$state/hide" 2>/dev/null || echo 0)
if [ "$hide" -gt 0 ]; then
  echo $((hide - 1)) > "$state/hide"
  sed 's/^return 200 "[A-Za-z0-9._-]* \\$pid";$/return 200 "${HIDDEN_VERSION} $pid";/' "$4" > "$4.hidden"
  exec ${JSON.stringify(nginx)} "$1" "$2" "$3" "$4.hidden" "$5" "$6"
fi
exec ${JSON.stringify(nginx)} "$@"
`;

export async function createNginxWrapper(nginx = NGINX_BINARY): Promise<NginxWrapper> {
  const dir = await mkdtemp(join(tmpdir(), 'k8s-router-nginx-wrapper-'));
  const state = join(dir, 'state');
  await mkdir(state);
  const path = join(dir, 'nginx');
  await writeFile(path, script(state, nginx));
  await chmod(path, 0o755);
  // Others must reach the script (nginx's workers run as nobody when the tests run as root).
  await chmod(dir, 0o755);
  const counter = async (name: string): Promise<number> =>
    Number((await readFile(join(state, name), 'utf8').catch(() => '0')).trim());
  return {
    path,
    refuseChecks: (reason = 'nginx: [emerg] refused by the test wrapper') =>
      writeFile(join(state, 'refuse'), `${reason}\n`),
    allowChecks: () => rm(join(state, 'refuse'), { force: true }),
    hideNextStarts: (count) => writeFile(join(state, 'hide'), String(count)),
    starts: () => counter('starts'),
    checks: () => counter('checks'),
    checkTimes: async () =>
      (await readFile(join(state, 'check-times'), 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Pids of the nginx masters running on `prefix`, with a config path ending in `suffix` if given. */
export async function nginxMasters(prefix: string, suffix = ''): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const title = await commandLine(Number(entry));
    if (title?.startsWith('nginx: master process ') && title.includes(` -p ${prefix} `) && title.includes(`${suffix} `))
      found.push(Number(entry));
  }
  return found;
}

/**
 * Kills every nginx process working for `prefix` (a test's own temp directory): masters
 * started with it, and workers holding files under it (a master's workers outlive it when
 * it is killed). For teardowns: a router killed outright leaves its nginx running, by design.
 */
export async function endNginxOn(prefix: string): Promise<number[]> {
  const ended: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const pid = Number(entry);
    const title = await commandLine(pid);
    if (!title?.startsWith('nginx: ')) continue;
    const files = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    const links = await Promise.all(files.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
    if (!`${title} `.includes(` -p ${prefix} `) && !links.some((l) => l.startsWith(`${prefix}/`))) continue;
    try {
      process.kill(pid, 'SIGKILL');
      ended.push(pid);
    } catch {
      // gone already
    }
  }
  return ended;
}
