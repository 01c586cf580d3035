import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  ControlError,
  parseVersions,
  patchTable,
  prepareControlSocket,
  putTable,
  servedByEveryWorker,
  tableVersions,
  type TableVersions,
} from '../nginx/control-client.js';

// The router's side of the control socket: reading the workers' reports, deciding when a
// table is served by every worker, readying the socket's directory, and failing clearly
// when nginx does not answer.

const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'k8s-router-control-'));
  dirs.push(dir);
  return dir;
}

describe('the control client: reports', () => {
  it('reads the versions report', () => {
    assert.deepEqual(parseVersions('k8s-router-versions 1\nworkers 2\nstored v3\nworker 0 101 v3\nworker 1 102 -'), {
      workers: 2,
      stored: 'v3',
      reports: [
        { id: 0, pid: 101, version: 'v3' },
        { id: 1, pid: 102, version: null },
      ],
    });
    assert.deepEqual(parseVersions('k8s-router-versions 1\nworkers 1\nstored -'), {
      workers: 1,
      stored: null,
      reports: [],
    });
    for (const bad of [
      '',
      'k8s-router-versions 2\nworkers 1\nstored -',
      'k8s-router-versions 1\nworkers x\nstored -',
      'k8s-router-versions 1\nworkers 1\nstored -\nworker 0 pid v1',
    ]) {
      assert.equal(parseVersions(bad), null, JSON.stringify(bad));
    }
  });

  it('counts a table served only when every worker id reports it from a live worker', () => {
    const versions: TableVersions = {
      workers: 2,
      stored: 'v2',
      reports: [
        { id: 0, pid: 11, version: 'v2' },
        { id: 1, pid: 12, version: 'v2' },
      ],
    };
    assert.equal(servedByEveryWorker(versions, 'v2'), true);
    assert.equal(servedByEveryWorker(versions, 'v2', new Set([11, 12, 13])), true);
    assert.equal(servedByEveryWorker(versions, 'v1'), false, 'another version');
    assert.equal(servedByEveryWorker(versions, 'v2', new Set([11])), false, 'a report left by a worker that is gone');
    assert.equal(
      servedByEveryWorker({ ...versions, reports: versions.reports.slice(0, 1) }, 'v2'),
      false,
      'a worker that did not report',
    );
    assert.equal(servedByEveryWorker({ ...versions, workers: 3 }, 'v2'), false, 'more workers than reports');
  });
});

describe('the control client: the socket', () => {
  it('readies the socket directory: mode 0700, and a socket left by a killed nginx removed', async () => {
    const dir = await tempDir();
    const socket = join(dir, 'control', 'table.sock');
    await prepareControlSocket(socket);
    assert.equal((await stat(join(dir, 'control'))).mode & 0o777, 0o700);
    // A socket file nobody listens on any more, as a killed nginx leaves it: a process
    // that listens on it, killed outright.
    const child = spawn(process.execPath, [
      '-e',
      `require('node:net').createServer().listen(${JSON.stringify(socket)}, () => process.stdout.write('up'))`,
    ]);
    await once(child.stdout, 'data');
    child.kill('SIGKILL');
    await once(child, 'exit');
    assert.ok((await stat(socket)).isSocket());
    await mkdir(join(dir, 'control'), { recursive: true, mode: 0o755 });
    await prepareControlSocket(socket);
    await assert.rejects(stat(socket), { code: 'ENOENT' });
    assert.equal((await stat(join(dir, 'control'))).mode & 0o777, 0o700);
  });

  it(
    'waits for the socket of an nginx still quitting to go ' +
      "(it removes its file itself, which would be the new one's)",
    async () => {
      const socket = join(await tempDir(), 'control', 'table.sock');
      await prepareControlSocket(socket);
      const quitting = createServer();
      await new Promise<void>((resolve) => quitting.listen(socket, resolve));
      const goneAt = Date.now() + 300;
      // As a quitting master does: it stops accepting and removes the file (net's close does both).
      setTimeout(() => quitting.close(), 300);
      await prepareControlSocket(socket, 5_000);
      assert.ok(Date.now() >= goneAt - 5, 'returned before the listener went away');
      await assert.rejects(stat(socket), { code: 'ENOENT' });
      // One still accepting after the wait is removed all the same: the new nginx must bind.
      const stuck = createServer();
      await new Promise<void>((resolve) => stuck.listen(socket, resolve));
      await prepareControlSocket(socket, 100);
      await assert.rejects(stat(socket), { code: 'ENOENT' });
      stuck.close();
    },
  );

  it('leaves alone a file at the socket path that is no socket', async () => {
    const dir = await tempDir();
    const path = join(dir, 'table.sock');
    await writeFile(path, 'not a socket');
    await assert.rejects(prepareControlSocket(path), /is not a socket/);
  });

  it('rejects with a ControlError without status when nothing answers on the socket', async () => {
    const socket = join(await tempDir(), 'none.sock');
    await assert.rejects(
      putTable(socket, 'x', 1_000),
      (err: unknown) =>
        err instanceof ControlError && err.status === null && err.errno === 'ENOENT' && /ENOENT/.test(err.message),
    );
    await assert.rejects(
      tableVersions(socket, 1_000),
      (err: unknown) => err instanceof ControlError && err.status === null,
    );
  });
});

describe('the control client: stores', () => {
  /** A control server on a unix socket that answers every request with `status` and `body`. */
  async function answering(status: number, body: string): Promise<{ socket: string; methods: string[] }> {
    const socket = join(await tempDir(), 'table.sock');
    const methods: string[] = [];
    const server = http.createServer((req, res) => {
      methods.push(req.method ?? '');
      req.resume();
      req.on('end', () => res.writeHead(status).end(body));
    });
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    after(() => server.close());
    return { socket, methods };
  }

  const report = 'k8s-router-versions 1\nworkers 1\nstored v2\nworker 0 7 v2';

  it('reads which table each worker served from the answer to a store', async () => {
    const { socket, methods } = await answering(200, `stored v2\n${report}\n`);
    const expected = { workers: 1, stored: 'v2', reports: [{ id: 0, pid: 7, version: 'v2' }] };
    assert.deepEqual(await putTable(socket, 'x', 1_000), expected);
    assert.deepEqual(await patchTable(socket, 'x', 1_000), expected);
    assert.deepEqual(methods, ['PUT', 'PATCH']);
    const bare = await answering(200, 'stored v2\n');
    assert.equal(await putTable(bare.socket, 'x', 1_000), null, 'an answer without a report');
  });

  const asksForWholeTable =
    'asks for the whole table when nginx does not hold the base (412) or takes no delta that large (413)';
  it(asksForWholeTable, async () => {
    for (const status of [412, 413]) {
      const { socket } = await answering(status, 'nginx holds table v1, not v0');
      assert.equal(await patchTable(socket, 'x', 1_000), 'whole-table-wanted', `status ${status}`);
    }
    for (const status of [400, 409, 507]) {
      const { socket } = await answering(status, 'no');
      await assert.rejects(
        patchTable(socket, 'x', 1_000),
        (err: unknown) => err instanceof ControlError && err.status === status && /refused the delta/.test(err.message),
      );
    }
  });
});
