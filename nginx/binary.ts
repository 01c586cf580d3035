import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

// Debian installs nginx in /usr/sbin, which is not in every user's PATH.
const SBIN = ['/usr/sbin', '/usr/local/sbin'];

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The nginx executable a setting names: a path as is, a bare name through PATH and sbin. */
export function findNginxBinary(setting: string, path = process.env.PATH ?? ''): string | null {
  if (setting.includes('/')) return isExecutable(setting) ? setting : null;
  const dirs = [...path.split(delimiter).filter((d) => d !== ''), ...SBIN];
  return dirs.map((dir) => join(dir, setting)).find(isExecutable) ?? null;
}
