import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { eventually } from '../support/eventually.js';
import { FakeApiServer } from '../support/fake-api-server.js';
import { endNginxOn } from '../support/nginx-wrapper.js';
import { workDir } from '../support/work-dir.js';

// SIGTERM before the router serves: an API server that answers every list with 500 keeps
// the first table from ever coming. The router must stop (its data plane and its nginx
// included) and exit 0, as it does once it serves, not die on the signal.

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

describe('a signal while the router starts', () => {
  for (const backend of ['proxy', 'nginx'] as const) {
    it(`stops the ${backend} router and exits 0 before its first table`, async () => {
      const api = await FakeApiServer.start();
      const dir = await workDir(`k8s-router-stop-starting-${backend}-`);
      const port = await pickFreeLoopbackPort();
      api.failRequests(500, { requests: 'list' });
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'run', '--backend', backend], {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH ?? '',
          HOME: process.env.HOME ?? '/root',
          KUBECONFIG: api.kubeConfigFile(),
          PORT: String(port),
          LISTEN_ADDRESS: '127.0.0.1',
          NGINX_PREFIX: join(dir, 'nginx'),
          ADMIN_PORT: '0',
          WATCH_BACKOFF_MAX_MS: '500',
          LOG_LEVEL: 'info',
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | string>((resolve) =>
        child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
      );
      try {
        await eventually(
          () => api.requests.filter((r) => !r.watch && r.status === 500).length >= 2,
          'the router to have tried to list twice',
          30_000,
        );
        assert.doesNotMatch(stderr, /k8s-router is serving/, 'no table can be served while every list fails');
        child.kill('SIGTERM');
        const exit = await Promise.race([
          exited,
          new Promise((resolve) => setTimeout(() => resolve('still running 20 s after SIGTERM'), 20_000)),
        ]);
        assert.equal(exit, 0, `exit ${String(exit)}; stderr:\n${stderr}`);
        assert.match(stderr, /stopped before serving/);
        assert.ok(await refused(port), `port ${port} is free again`);
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        await exited;
        await endNginxOn(join(dir, 'nginx'));
        await api.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
