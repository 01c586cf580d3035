import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// `nginx -t` on a rendered config, in a throw-away prefix so that nothing under /etc,
// /var/log or /run is read or written. nginx is a hard requirement of the suite: CI
// installs it, and a missing nginx fails the tests rather than skipping them.

export const NGINX_BINARY =
  process.env.NGINX_BINARY ??
  ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx'].find(existsSync) ??
  'nginx';

export interface NginxVerdict {
  ok: boolean;
  output: string;
}

export async function nginxTest(config: string): Promise<NginxVerdict> {
  const prefix = await mkdtemp(join(tmpdir(), 'k8s-router-nginx-t-'));
  try {
    await mkdir(join(prefix, 'logs'));
    const file = join(prefix, 'nginx.conf');
    await writeFile(file, config);
    // A config for a managed nginx names its own pid file; the documented one does not.
    const pid = /^pid /m.test(config) ? [] : ['-g', `pid ${join(prefix, 'nginx.pid')};`];
    return await new Promise<NginxVerdict>((resolve, reject) => {
      execFile(
        NGINX_BINARY,
        ['-t', '-q', '-p', prefix, '-c', file, '-e', 'stderr', ...pid],
        { timeout: 20_000 },
        (err, stdout, stderr) => {
          if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
            reject(
              new Error(
                `nginx not found at ${NGINX_BINARY}: install it (apt-get install -y nginx) or set NGINX_BINARY`,
              ),
            );
            return;
          }
          resolve({ ok: err === null, output: `${stdout}${stderr}`.trim() });
        },
      );
    });
  } finally {
    await rm(prefix, { recursive: true, force: true });
  }
}
