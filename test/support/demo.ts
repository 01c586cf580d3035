import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RouterProcess } from './router-process.js';

// Helpers for tests that run `k8s-router demo`: a copy of the demo manifest on addresses
// of the test's own (so demos in tests running side by side, or a user's `npm start`,
// never share a pod address), and the commands the demo prints, run as a user would.

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const DEMO_MANIFEST = join(ROOT, 'examples', 'demo', 'demo.yaml');
/** The demo starts eight pod processes, then the router: on a busy machine that takes a while. */
export const DEMO_START_TIMEOUT_MS = 60_000;

/**
 * Writes the demo manifest to `dir`, its pods moved from 127.0.0.x to 127.0.`subnet`.x,
 * with `edit` applied to the text; returns the file's path.
 */
export async function demoManifestCopy(
  dir: string,
  subnet: number,
  edit: (text: string) => string = (t) => t,
): Promise<string> {
  const text = (await readFile(DEMO_MANIFEST, 'utf8')).replaceAll('podIP: 127.0.0.', `podIP: 127.0.${subnet}.`);
  const file = join(dir, 'demo.yaml');
  await writeFile(file, edit(text));
  return file;
}

/** A Pod for the demo manifest, as a list item (indented as the file's items are). */
export function demoPodItem(options: {
  name: string;
  namespace: string;
  ip: string;
  port: number;
  hosts: string;
  paths: string;
  ready?: boolean;
}): string {
  return [
    '  - apiVersion: v1',
    '    kind: Pod',
    '    metadata:',
    `      name: ${options.name}`,
    `      namespace: ${options.namespace}`,
    '      creationTimestamp: "2024-05-01T00:00:00Z"',
    '      labels: {routable: "true"}',
    '      annotations:',
    `        routingHosts: ${JSON.stringify(options.hosts)}`,
    `        routingPaths: ${JSON.stringify(options.paths)}`,
    '    spec:',
    `      containers: [{name: app, ports: [{containerPort: ${options.port}}]}]`,
    '    status:',
    '      phase: Running',
    `      podIP: ${options.ip}`,
    `      conditions: [{type: Ready, status: "${options.ready === false ? 'False' : 'True'}"}]`,
    '',
  ].join('\n');
}

/** The commands the demo printed (the indented lines), in order. */
export function printedCommands(stdout: string): string[] {
  return stdout
    .split('\n')
    .filter((line) => /^ {2}(curl|node|http) /.test(line) || /^ {2}http:\/\//.test(line))
    .map((line) => line.trim());
}

export interface ShellResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a printed command with sh, from the checkout's root, as pasted into a terminal. */
export function runShell(command: string, timeoutMs = 20_000): Promise<ShellResult> {
  return new Promise((resolve) => {
    execFile(
      'sh',
      ['-c', command],
      { cwd: ROOT, timeout: timeoutMs, env: { PATH: process.env.PATH ?? '' } },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Pids of the demo pods the demo logged as started. */
export function demoPodPids(router: RouterProcess): number[] {
  return router.logs.filter((l) => l.msg === 'demo pod started').map((l) => l.pid as number);
}

export { adminPortOf } from './router-process.js';

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
