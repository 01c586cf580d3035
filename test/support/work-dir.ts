import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A fresh directory under the system temp directory for a test's files, nginx's prefix
 * among them. When the tests run as root, nginx's workers run as nobody and must pass
 * through it to their temporary files (the router refuses a prefix they cannot reach), so
 * others may search it (0711), not list or write it.
 */
export async function workDir(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), name));
  await chmod(dir, 0o711);
  return dir;
}
