import { open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writePieces, type ConfPieces } from './conf-pieces.js';

// Durable file replacement for nginx.conf: a reader (nginx, a restart after a crash, a
// power cut) sees either the whole old file or the whole new one, never a mix. The file
// holds the tenants' API keys, so only its owner may read it: the nginx master reads it
// as the router's own user, its workers never do.

/** Writes `text` to a new file at `path`, readable by its owner only, and flushes it to disk. */
export async function writeSynced(path: string, text: string | ConfPieces): Promise<void> {
  // Created afresh so the mode applies (an existing file would keep its own) and a link
  // planted at this name is not followed.
  await rm(path, { force: true });
  const file = await open(path, 'wx', 0o600);
  try {
    if (typeof text === 'string') await file.writeFile(text);
    else await writePieces(file, text);
    await file.sync();
  } finally {
    await file.close();
  }
}

/** Renames `from` over `to` (same directory) and flushes the directory so the rename survives a crash. */
export async function replaceFile(from: string, to: string): Promise<void> {
  await rename(from, to);
  const dir = await open(dirname(to), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** Replaces `path` atomically with `text`, through a temporary file next to it. */
export async function writeFileAtomic(path: string, text: string | ConfPieces): Promise<void> {
  const temporary = `${path}.${process.pid}.${Date.now()}.tmp`;
  try {
    await writeSynced(temporary, text);
    await replaceFile(temporary, path);
  } finally {
    await rm(temporary, { force: true });
  }
}

/**
 * Why `dir` is unsafe for files holding API keys (owned by another user, or writable by
 * group or others, as a directory someone else created under /tmp could be), or null.
 */
export async function unsafeDirectoryProblem(dir: string, uid = process.getuid?.()): Promise<string | null> {
  const info = await stat(dir);
  if (!info.isDirectory()) return 'is not a directory';
  if (uid !== undefined && info.uid !== uid) return `is owned by uid ${info.uid}, not by this process (uid ${uid})`;
  if ((info.mode & 0o022) !== 0) return `is writable by group or others (mode ${(info.mode & 0o777).toString(8)})`;
  return null;
}
