import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RouteTable } from '../../src/route-table.js';
import { renderNginxConf } from '../../nginx/render.js';
import { NGINX_BINARY } from './nginx-check.js';

// Real nginx on the rendered config, in a throw-away prefix, as a foreground child on
// 127.0.0.1 and a free port: the reference the in-process proxy is compared with. It
// has the proxy's shape (port, apply, close) so a test drives both the same way.

export interface NginxRunnerOptions {
  apiKeyHeader?: string;
  /**
   * http-level directives added after "http {" of the rendered text, e.g. a short
   * proxy_read_timeout so that a timeout can be compared without waiting 60 s. The
   * renderer itself is not changed.
   */
  httpDirectives?: string[];
}

export interface NginxRunner {
  readonly port: number;
  readonly pid: number;
  /** Renders, checks (nginx -t) and reloads; resolves when only workers of the new config run. */
  apply(table: RouteTable): Promise<void>;
  close(): Promise<void>;
  errorLog(): Promise<string>;
}

export async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Pids of the processes whose parent is `pid` (nginx's workers), from /proc. */
async function childrenOf(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      // The command name may hold spaces; fields after the closing parenthesis are fixed.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') out.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

function nginxTestConfig(prefix: string, file: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(NGINX_BINARY, ['-t', '-q', '-p', prefix, '-c', file, '-e', 'stderr'], { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`nginx -t refused the config: ${stdout}${stderr}`));
      else resolve();
    });
  });
}

export async function startNginx(table: RouteTable, options: NginxRunnerOptions = {}): Promise<NginxRunner> {
  const prefix = await mkdtemp(join(tmpdir(), 'k8s-router-nginx-'));
  await mkdir(join(prefix, 'temp'));
  const port = await freePort();
  const runtime = {
    pidFile: join(prefix, 'nginx.pid'),
    errorLog: join(prefix, 'error.log'),
    accessLog: join(prefix, 'access.log'),
    tempDir: join(prefix, 'temp'),
  };
  const confFile = join(prefix, 'nginx.conf');
  const render = (t: RouteTable): string => {
    const text = renderNginxConf(t, { port, listenAddress: '127.0.0.1', apiKeyHeader: options.apiKeyHeader ?? 'X-ROUTING-API-KEY', runtime });
    const extra = options.httpDirectives ?? [];
    return extra.length === 0 ? text : text.replace(/^http \{\n/m, (open) => `${open}${extra.join('\n')}\n`);
  };

  await writeFile(confFile, render(table));
  await nginxTestConfig(prefix, confFile);
  const child: ChildProcess = spawn(NGINX_BINARY, ['-p', prefix, '-c', confFile, '-e', runtime.errorLog], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited = false;
  child.once('exit', () => (exited = true));
  const pid = child.pid;
  if (pid === undefined) throw new Error('nginx did not start');

  const stop = async (): Promise<void> => {
    if (!exited) {
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(timer);
    }
    await rm(prefix, { recursive: true, force: true });
  };

  try {
    await waitUntil('nginx to accept connections', 10_000, async () => {
      if (exited) throw new Error(`nginx exited: ${stderr}`);
      return (await accepts(port)) && (await childrenOf(pid)).length > 0;
    });
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    port,
    pid,
    async apply(next: RouteTable): Promise<void> {
      const candidate = join(prefix, 'candidate.conf');
      await writeFile(candidate, render(next));
      await nginxTestConfig(prefix, candidate);
      await writeFile(confFile, render(next));
      const before = new Set(await childrenOf(pid));
      process.kill(pid, 'SIGHUP');
      // Old workers finish their requests and leave; once only new ones remain, every
      // connection is served by the new config (and fresh upstream state).
      await waitUntil('nginx to reload', 10_000, async () => {
        if (exited) throw new Error(`nginx exited: ${stderr}`);
        const now = await childrenOf(pid);
        return now.length > 0 && now.every((p) => !before.has(p));
      });
    },
    close: stop,
    async errorLog(): Promise<string> {
      return readFile(runtime.errorLog, 'utf8').catch(() => '');
    },
  };
}
