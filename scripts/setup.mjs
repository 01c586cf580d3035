#!/usr/bin/env node
// Gets a checkout ready to run, so that `npm start` and `npm test` work on a fresh clone
// with nothing but Node and npm: installs the dependencies (`npm ci`) when node_modules is
// missing or older than package-lock.json, and builds dist/ when it is missing or older
// than the sources. It runs before anything is installed, so it uses nothing but Node.
//
//   node scripts/setup.mjs            do what is needed
//   node scripts/setup.mjs --check    only say what would be done, and why

import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SOURCE_DIRS = ['src', 'proxy', 'nginx'];
const SOURCE_FILES = ['tsconfig.json', 'tsconfig.build.json'];

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return null;
  }
}

/** The newest modification time of the files below `dir` (0 when there are none). */
function newestBelow(dir) {
  let newest = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestBelow(path) : (mtime(path) ?? 0));
  }
  return newest;
}

/** Why `npm ci` is needed, or null. npm writes node_modules/.package-lock.json on every install. */
export function installReason(root) {
  const installed = mtime(join(root, 'node_modules', '.package-lock.json'));
  if (installed === null) return 'node_modules is missing';
  const lock = mtime(join(root, 'package-lock.json')) ?? 0;
  if (lock > installed) return 'package-lock.json is newer than node_modules';
  return null;
}

/** Why `npm run build` is needed, or null. */
export function buildReason(root) {
  const built = mtime(join(root, 'dist', 'src', 'cli.js'));
  if (built === null) return 'dist/ is missing';
  const sources = Math.max(
    ...SOURCE_DIRS.map((d) => newestBelow(join(root, d))),
    ...SOURCE_FILES.map((f) => mtime(join(root, f)) ?? 0),
  );
  if (sources > built) return 'the sources are newer than dist/';
  return null;
}

/** npm as the one running this script, or the one on PATH. */
function npm(root, args) {
  const cli = process.env.npm_execpath;
  const [command, argv] = cli && cli.endsWith('.js') ? [process.execPath, [cli, ...args]] : ['npm', args];
  const result = spawnSync(command, argv, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  if (result.status !== 0) {
    console.error(
      `setup: npm ${args.join(' ')} failed` +
        (result.error ? `: ${result.error.message}` : ` with status ${result.status}`),
    );
    process.exit(result.status || 1);
  }
}

function main() {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const rootArg = process.argv.indexOf('--root');
  const target = rootArg > 0 ? process.argv[rootArg + 1] : root;
  const checkOnly = process.argv.includes('--check');

  const install = installReason(target);
  if (checkOnly) console.log(`install: ${install ?? 'no'}`);
  else if (install !== null) {
    console.error(`setup: ${install}: running npm ci`);
    npm(target, ['ci']);
  }
  // npm ci builds dist/ too (the prepare script); look again afterwards.
  const build = buildReason(target);
  if (checkOnly) console.log(`build: ${build ?? 'no'}`);
  else if (build !== null) {
    console.error(`setup: ${build}: running npm run build`);
    npm(target, ['run', 'build']);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
