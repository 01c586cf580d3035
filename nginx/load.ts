import { open, rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import { checkNginxConfig, firstLines } from './check.js';
import type { ConfPieces } from './conf-pieces.js';
import { replaceFile, writeSynced } from './files.js';
import { spawnNginxMaster, type MasterExit, type NginxMaster, type StopTimeouts } from './master.js';
import type { NginxErrorCode } from './manager-state.js';
import { waitForConfigVersion } from './status.js';
import { childrenOf, parentOf, waitForRetirement } from './workers.js';

// The steps that put a config in front of nginx, each with what can go wrong: install a
// checked file, start a master on it, or have a running master load it (SIGHUP), each
// confirmed by reading the config version back from nginx's loopback status server.

export class NginxApplyError extends Error {
  constructor(
    readonly code: NginxErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'NginxApplyError';
  }
}

export interface LoadContext {
  nginxBinary: string;
  prefix: string;
  confPath: string;
  errorLog: string;
  statusPort: number;
  /** How long nginx may take to start or load a config before the attempt counts as failed. */
  confirmTimeoutMs: number;
  stopTimeouts: StopTimeouts;
  logger?: Logger;
}

export function describeExit(exit: MasterExit): string {
  if (exit.error) return `nginx could not be started: ${exit.error.message}`;
  return exit.signal ? `nginx exited on ${exit.signal}` : `nginx exited with status ${exit.code}`;
}

export async function fileSize(path: string): Promise<number> {
  try {
    const file = await open(path, 'r');
    try {
      return (await file.stat()).size;
    } finally {
      await file.close();
    }
  } catch {
    return 0;
  }
}

/** What nginx appended to its error log since `offset` (at most the last 4 KiB). */
export async function logSince(path: string, offset: number): Promise<string> {
  try {
    const file = await open(path, 'r');
    try {
      const size = (await file.stat()).size;
      const start = Math.max(offset, size - 4096);
      const buffer = Buffer.alloc(Math.max(0, size - start));
      await file.read(buffer, 0, buffer.length, start);
      return buffer.toString('utf8').trim();
    } finally {
      await file.close();
    }
  } catch {
    return '';
  }
}

let candidateSeq = 0;

/**
 * Writes `text` beside the live config, has `nginx -t` check it (unless `check` is false:
 * then the load that follows is the check), and renames it into place.
 */
export async function installConfig(
  ctx: LoadContext,
  text: string | ConfPieces,
  check: boolean,
): Promise<{ writeMs: number; checkMs: number }> {
  const candidate = `${ctx.confPath}.candidate-${process.pid}-${++candidateSeq}`;
  const timings = { writeMs: 0, checkMs: 0 };
  try {
    let t = performance.now();
    await writeSynced(candidate, text);
    timings.writeMs = performance.now() - t;
    if (check) {
      t = performance.now();
      const verdict = await checkNginxConfig({ nginxBinary: ctx.nginxBinary, prefix: ctx.prefix, confPath: candidate });
      timings.checkMs = performance.now() - t;
      if (!verdict.ok)
        throw new NginxApplyError('KR_NGINX_CONFIG_REFUSED', `nginx refused the config: ${firstLines(verdict.output)}`);
    }
    await replaceFile(candidate, ctx.confPath);
    return timings;
  } finally {
    await rm(candidate, { force: true });
  }
}

/**
 * Starts a master on the installed config and waits until one of its workers serves
 * `version`. `onSpawn` learns of the master at once, so its exit is followed even if the
 * start fails. On failure the master is stopped and the error says what nginx said.
 */
export async function startMaster(
  ctx: LoadContext,
  version: string,
  onSpawn: (m: NginxMaster) => void,
): Promise<NginxMaster> {
  const logOffset = await fileSize(ctx.errorLog);
  const m = spawnNginxMaster({
    nginxBinary: ctx.nginxBinary,
    prefix: ctx.prefix,
    confPath: ctx.confPath,
    errorLog: ctx.errorLog,
    onOutput: (line) => ctx.logger?.warn({ nginx: line }, 'nginx output'),
  });
  onSpawn(m);
  ctx.logger?.debug({ pid: m.pid }, 'nginx started; waiting for it to serve its config');
  try {
    await waitForConfigVersion(ctx.statusPort, version, {
      timeoutMs: ctx.confirmTimeoutMs,
      isOurWorker: async (pid) => m.pid !== undefined && (await parentOf(pid)) === m.pid,
      gaveUp: () => {
        const exit = m.exit();
        return exit === null ? null : describeExit(exit);
      },
    });
  } catch (err) {
    // It never served for sure: no long graceful stop. What it leaves behind is ended
    // before the next start.
    await m.stop({ gracefulMs: ctx.stopTimeouts.fastMs, fastMs: ctx.stopTimeouts.fastMs });
    const detail = firstLines([await logSince(ctx.errorLog, logOffset), m.output().trim()].filter(Boolean).join('\n'));
    throw new NginxApplyError(
      'KR_NGINX_START_FAILED',
      `nginx did not start: ${(err as Error).message}${detail ? `\n${detail}` : ''}`,
    );
  }
  return m;
}

/**
 * Has the running master load the installed config (a graceful reload) and waits until
 * a new worker serves `version`, then until no old worker accepts connections.
 */
export async function reloadMaster(
  ctx: LoadContext,
  m: NginxMaster,
  version: string,
): Promise<{ loadMs: number; retireMs: number }> {
  const logOffset = await fileSize(ctx.errorLog);
  const pid = m.pid as number;
  const oldWorkers = await childrenOf(pid);
  let t = performance.now();
  m.signal('SIGHUP');
  try {
    await waitForConfigVersion(ctx.statusPort, version, {
      timeoutMs: ctx.confirmTimeoutMs,
      isOurWorker: async (worker) => (await parentOf(worker)) === pid,
      gaveUp: async () => {
        const exit = m.exit();
        if (exit !== null) return `${describeExit(exit)} during the reload`;
        // An [emerg] means the master keeps its old config; no need to wait out the timeout.
        const emerg = (await logSince(ctx.errorLog, logOffset)).split('\n').find((line) => line.includes('[emerg]'));
        return emerg === undefined ? null : 'the reload failed';
      },
    });
  } catch (err) {
    const detail = firstLines(await logSince(ctx.errorLog, logOffset));
    throw new NginxApplyError(
      'KR_NGINX_RELOAD_FAILED',
      `nginx did not load the config: ${(err as Error).message}${detail ? `\n${detail}` : ''}`,
    );
  }
  const loadMs = performance.now() - t;
  t = performance.now();
  const stillAccepting = await waitForRetirement(oldWorkers, ctx.confirmTimeoutMs);
  const retireMs = performance.now() - t;
  if (stillAccepting.length > 0) {
    ctx.logger?.warn(
      { pids: stillAccepting.map((w) => w.pid) },
      'old nginx workers still accept connections after the reload',
    );
  }
  return { loadMs, retireMs };
}
