import { request } from 'node:http';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONFIG_VERSION_PATH } from './render.js';

// Reads the config version a managed nginx serves from its loopback status server. Each
// read uses a fresh connection: a kept-alive one could stay with an old worker.

const MAX_POLL_MS = 100;

export interface StatusAnswer {
  version: string;
  /** The pid of the nginx worker that answered. */
  workerPid: number;
}

/** What the status server answers, or null when nothing answers properly. */
export function readConfigVersion(port: number, timeoutMs = 1_000): Promise<StatusAnswer | null> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: CONFIG_VERSION_PATH,
        agent: false,
        timeout: timeoutMs,
        headers: { connection: 'close' },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => {
          const match = /^([A-Za-z0-9._-]+) ([0-9]+)$/.exec(body);
          resolve(
            res.statusCode === 200 && match ? { version: match[1] as string, workerPid: Number(match[2]) } : null,
          );
        });
        res.on('error', () => resolve(null));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
    req.end();
  });
}

export interface WaitForVersionOptions {
  timeoutMs: number;
  /** Whether the worker that answered is one of ours (another nginx may hold the port). */
  isOurWorker: (pid: number) => Promise<boolean>;
  /** The shortest wait between two reads; it grows to a tenth of the time waited so far, at most 100 ms. */
  pollMs?: number;
  /** Stops waiting early, e.g. when nginx exited or logged that it failed: a reason, or null to go on. */
  gaveUp?: () => string | null | Promise<string | null>;
}

/**
 * Polls until the status server answers `version`; rejects after `timeoutMs` (nginx kept
 * its old config, e.g. a port it could not bind) or when `gaveUp` returns a reason.
 */
export async function waitForConfigVersion(
  port: number,
  version: string,
  options: WaitForVersionOptions,
): Promise<void> {
  const { timeoutMs, isOurWorker, pollMs = 10, gaveUp = () => null } = options;
  const startedAt = Date.now();
  const deadline = startedAt + timeoutMs;
  let seen = 'nothing';
  for (;;) {
    const reason = await gaveUp();
    if (reason !== null) throw new Error(reason);
    const answer = await readConfigVersion(port, Math.max(1, Math.min(1_000, deadline - Date.now())));
    if (answer !== null) {
      const ours = await isOurWorker(answer.workerPid);
      if (answer.version === version && ours) return;
      seen = `${answer.version} from ${ours ? '' : 'foreign '}worker ${answer.workerPid}`;
    }
    if (Date.now() >= deadline) break;
    // A big config takes nginx seconds to load: reading every 10 ms all along would take
    // CPU from it for nothing, while a small one is seen within a few ms.
    await sleep(Math.min(MAX_POLL_MS, Math.max(pollMs, (Date.now() - startedAt) / 10)));
  }
  throw new Error(`nginx did not serve config ${version} within ${timeoutMs} ms (status port answers ${seen})`);
}

/** A loopback port nothing listens on right now, for the status server. */
export function pickFreeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free loopback port'))));
    });
  });
}
