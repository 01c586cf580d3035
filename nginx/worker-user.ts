import { chmod, readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

// When the router runs as root, nginx's master does too and its workers switch to an
// unprivileged user (nginx's `user`, `nobody` unless told otherwise). The workers write
// request bodies and large responses to the temporary directories under the prefix: if
// they cannot reach them, nginx answers 500 to a large POST and cuts a large download
// short with a 200 already sent, and only its error log says why. So, as root, the
// router names the workers' user itself (`user nobody GROUP;`: nginx's compiled-in group
// differs between builds) and makes sure that user can reach the temporary directory,
// or refuses to start with the reason. Not as root, nginx's workers run as the router's
// user, which owns the prefix.

export interface WorkerIdentity {
  user: string;
  group: string;
  uid: number;
  gid: number;
}

/** The user nginx's workers run as when its master runs as root. */
export const WORKER_USER = 'nobody';

interface DatabaseEntry {
  name: string;
  id: number;
  /** For passwd: the primary group's id. */
  gid?: number;
}

/** The entries of /etc/passwd or /etc/group text (name:x:id:...). */
export function parseIdDatabase(text: string, kind: 'passwd' | 'group'): DatabaseEntry[] {
  const entries: DatabaseEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(':');
    const id = Number(fields[2]);
    if (fields[0] === undefined || fields[0] === '' || !Number.isInteger(id)) continue;
    entries.push(kind === 'passwd' ? { name: fields[0], id, gid: Number(fields[3]) } : { name: fields[0], id });
  }
  return entries;
}

/** The worker identity from the account databases' text; a problem when `user` or its group is missing. */
export function workerIdentityFrom(passwd: string, groups: string, user = WORKER_USER): WorkerIdentity | string {
  const account = parseIdDatabase(passwd, 'passwd').find((e) => e.name === user);
  if (account === undefined || account.gid === undefined || !Number.isInteger(account.gid)) {
    return `there is no user ${user} in /etc/passwd for nginx's workers to run as`;
  }
  const group = parseIdDatabase(groups, 'group').find((e) => e.id === account.gid);
  if (group === undefined) return `the primary group ${account.gid} of user ${user} is not in /etc/group`;
  return { user, group: group.name, uid: account.id, gid: account.gid };
}

/** Who nginx's workers run as: null when the router is not root (they run as the router's user). */
export async function nginxWorkerIdentity(euid = process.geteuid?.()): Promise<WorkerIdentity | null> {
  if (euid !== 0) return null;
  const [passwd, groups] = await Promise.all([
    readFile('/etc/passwd', 'utf8').catch(() => ''),
    readFile('/etc/group', 'utf8').catch(() => ''),
  ]);
  const identity = workerIdentityFrom(passwd, groups);
  if (typeof identity === 'string') throw new Error(identity);
  return identity;
}

export interface DirectoryFacts {
  path: string;
  uid: number;
  gid: number;
  mode: number;
}

/** Whether `who` may pass through (search) a directory with these owner, group and mode bits. */
export function canSearch(dir: DirectoryFacts, who: Pick<WorkerIdentity, 'uid' | 'gid'>): boolean {
  if (who.uid === 0) return true;
  if (dir.uid === who.uid) return (dir.mode & 0o100) !== 0;
  if (dir.gid === who.gid) return (dir.mode & 0o010) !== 0;
  return (dir.mode & 0o001) !== 0;
}

/** `dir` and every directory above it, from the root down. */
export function directoryChain(dir: string): string[] {
  const chain: string[] = [];
  for (let current = resolve(dir); ; current = dirname(current)) {
    chain.unshift(current);
    if (dirname(current) === current) return chain;
  }
}

export interface AccessPlan {
  /** Directories of the router's own (the prefix and below) that get search permission for others. */
  open: DirectoryFacts[];
  /** Directories above the prefix that shut the workers out: the router cannot change them. */
  blocked: DirectoryFacts[];
}

/**
 * What stands between the workers and `target` (the temporary directory): a directory
 * at or below `prefix` they cannot search gets search (not read) permission for others
 * (o+x: names inside stay unlisted, the config and logs stay the owner's); one above the
 * prefix is not the router's to change.
 */
export function planWorkerAccess(
  chain: readonly DirectoryFacts[],
  prefix: string,
  who: Pick<WorkerIdentity, 'uid' | 'gid'>,
): AccessPlan {
  const inside = resolve(prefix);
  const plan: AccessPlan = { open: [], blocked: [] };
  for (const dir of chain) {
    if (canSearch(dir, who)) continue;
    const ours = dir.path === inside || dir.path.startsWith(`${inside}/`);
    (ours ? plan.open : plan.blocked).push(dir);
  }
  return plan;
}

/**
 * Lets the workers reach `tempDir` under `prefix`, or throws with the reason they cannot.
 * Returns the directories it opened, for the log.
 */
export async function prepareWorkerAccess(prefix: string, tempDir: string, who: WorkerIdentity): Promise<string[]> {
  const chain: DirectoryFacts[] = [];
  for (const path of directoryChain(tempDir)) {
    const info = await stat(path);
    chain.push({ path, uid: info.uid, gid: info.gid, mode: info.mode & 0o7777 });
  }
  const plan = planWorkerAccess(chain, prefix, who);
  if (plan.blocked.length > 0) {
    const first = plan.blocked[0] as DirectoryFacts;
    throw new Error(
      `nginx's workers run as ${who.user} (uid ${who.uid}) and could not reach ${tempDir}: ` +
        `${first.path} (mode ${first.mode.toString(8)}, owner uid ${first.uid}) does not let them through; ` +
        'use an NGINX_PREFIX they can reach, or run the router as a user other than root',
    );
  }
  for (const dir of plan.open) await chmod(dir.path, dir.mode | 0o001);
  return plan.open.map((d) => d.path);
}
