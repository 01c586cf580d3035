import { join } from 'node:path';

/** Where the managed nginx keeps its files; each defaults to a place under the prefix. */
export interface NginxFiles {
  conf: string;
  pid: string;
  errorLog: string;
  accessLog: string;
  tempDir: string;
}

export function resolveFiles(prefix: string, overrides: Partial<NginxFiles> = {}): NginxFiles {
  return {
    conf: overrides.conf ?? join(prefix, 'nginx.conf'),
    pid: overrides.pid ?? join(prefix, 'nginx.pid'),
    errorLog: overrides.errorLog ?? join(prefix, 'logs', 'error.log'),
    accessLog: overrides.accessLog ?? join(prefix, 'logs', 'access.log'),
    tempDir: overrides.tempDir ?? join(prefix, 'temp'),
  };
}
