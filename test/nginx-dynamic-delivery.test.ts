import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { dynamicDelivery } from '../nginx/dynamic-delivery.js';
import { NginxApplyError } from '../nginx/load.js';
import { tableOf } from './conformance/harness.js';

// The dynamic delivery against a control server of ours on the socket, for what real nginx
// will not do on demand: workers that never all serve a table, and a control server that
// stops answering.

const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

/** The report of one worker, pid 4242 (no child of this process), serving table `old`. */
const STALE_REPORT = 'k8s-router-versions 1\nworkers 1\nstored old\nworker 0 4242 old';

/**
 * A control server that takes every store, answers the first `answers` GET /versions with
 * STALE_REPORT, and leaves every later one unanswered.
 */
async function staleThenSilent(answers: number): Promise<{ socket: string; asked: () => number }> {
  const dir = await mkdtemp(join(tmpdir(), 'k8s-router-delivery-'));
  dirs.push(dir);
  const socket = join(dir, 'table.sock');
  let asked = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method !== 'GET') res.writeHead(200).end(`stored new\n${STALE_REPORT}\n`);
      else if (++asked <= answers) res.writeHead(200).end(`${STALE_REPORT}\n`);
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  after(() => server.closeAllConnections());
  after(() => server.close());
  return { socket, asked: () => asked };
}

describe('dynamic delivery', () => {
  it('says what the workers last reported when a table is not served in time, not only the last timeout', async () => {
    const control = await staleThenSilent(2);
    const delivery = dynamicDelivery({
      render: { port: 1, listenAddress: '127.0.0.1', apiKeyHeader: 'X-KEY' },
      controlSocket: control.socket,
      luaModules: { ndk: '/nonexistent/ndk.so', lua: '/nonexistent/lua.so' },
      luaDir: '/nonexistent',
      timeoutMs: 400,
    });
    let error: unknown = null;
    await delivery.send(tableOf([]), { pid: process.pid }).catch((err: unknown) => (error = err));
    assert.ok(error instanceof NginxApplyError, `an NginxApplyError, got ${String(error)}`);
    assert.equal(error.code, 'KR_NGINX_TABLE_NOT_SERVED');
    assert.ok(control.asked() > 2, `asked again after the answers ran out: ${control.asked()} GETs`);
    assert.match(
      error.message,
      /within 400 ms: 1 workers; worker 0 \(pid 4242, gone\): old; then .*no answer within \d+ ms$/,
    );
  });
});
