import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

// Durable file replacement for nginx.conf: a reader (nginx, a restart after a crash, a
// power cut) sees either the whole old file or the whole new one, never a mix.

/** Writes `text` to `path` and flushes it to disk before returning. */
export async function writeSynced(path: string, text: string): Promise<void> {
  const file = await open(path, 'w', 0o644);
  try {
    await file.writeFile(text);
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
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const temporary = `${path}.${process.pid}.${Date.now()}.tmp`;
  try {
    await writeSynced(temporary, text);
    await replaceFile(temporary, path);
  } finally {
    await rm(temporary, { force: true });
  }
}
