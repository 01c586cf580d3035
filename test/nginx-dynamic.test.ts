import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { chmod, cp, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import WebSocket from 'ws';
import { putTable } from '../nginx/control-client.js';
import { bundledLuaDir } from '../nginx/lua-modules.js';
import { serializeTable } from '../nginx/table-wire.js';
import { childrenOf } from '../nginx/workers.js';
import { startProxy } from '../proxy/server.js';
import { startNginx, tableOf } from './conformance/harness.js';
import { delay, eventually } from './support/eventually.js';
import { API_KEY_HEADER, startDynamicNginx } from './support/dynamic-nginx.js';
import { deadAddress, startPod, type TestPod } from './support/pods.js';

// Dynamic nginx as the router uses it: tables put over the control socket, served at once
// by every worker with no reload and no new process, kept by nginx across a reload and a
// worker's crash but not a restart, balancing state kept for routes whose pods did not
// change. (What it answers, request by request, the conformance suites compare with
// documented nginx.)

let pods: TestPod[] = [];
before(async () => {
  pods = await Promise.all([0, 1, 2, 3].map((i) => startPod(`dyn-${i}`, `127.0.0.${100 + i}`)));
});
after(() => Promise.all(pods.map((p) => p.close())));

const pod = (i: number): TestPod => pods[i] as TestPod;

/** The pod that answers GET `path` on `host` through a new connection, or 'dropped' / the status. */
function answeredBy(port: number, host: string, path = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () =>
        resolve(typeof res.headers['x-pod'] === 'string' ? res.headers['x-pod'] : String(res.statusCode)),
      );
    });
    req.on('error', (err: NodeJS.ErrnoException) =>
      err.code === 'ECONNRESET' || /socket hang up/.test(err.message) ? resolve('dropped') : reject(err),
    );
  });
}

async function processesOf(masterPid: number): Promise<number[]> {
  return [masterPid, ...(await childrenOf(masterPid)).map((c) => c.pid)].sort((a, b) => a - b);
}

async function hundredChangesWithoutReload(): Promise<void> {
  const nginx = await startDynamicNginx(tableOf([{ host: 'ws.test', path: '/', pods: [pod(0)] }]), {
    workerProcesses: 2,
  });
  try {
    const processes = await processesOf(nginx.master.pid as number);
    const ws = new WebSocket(`ws://127.0.0.1:${nginx.port}/chat`, { headers: { Host: 'ws.test' } });
    await once(ws, 'open');
    const echo = async (text: string): Promise<string> => {
      ws.send(text);
      const [data] = (await once(ws, 'message')) as [Buffer];
      return String(data);
    };
    for (let i = 0; i < 100; i++) {
      // The WebSocket's own route changes pods; other hosts come and go.
      const own = i % 2 === 0 ? [pod(1), pod(2)] : [pod(3)];
      const others = Array.from({ length: i % 7 }, (_, k) => ({
        host: `h${k}.test`,
        path: `/p${i}`,
        pods: [pod(k % 4)],
      }));
      await nginx.apply(tableOf([{ host: 'ws.test', path: '/', pods: own }, ...others]));
      assert.equal(await echo(`m${i}`), `dyn-0:m${i}`, `change ${i}: the WebSocket still reaches its pod`);
      assert.equal(
        await answeredBy(nginx.port, 'ws.test'),
        own[0]?.name,
        `change ${i}: a new request goes to the new pods`,
      );
      // Hosts and paths that came, went or moved: h0.test routes /p{i} alone, when it is there at all.
      const h0 = others.length > 0;
      assert.equal(
        await answeredBy(nginx.port, 'h0.test', `/p${i}`),
        h0 ? 'dyn-0' : 'dropped',
        `change ${i}: h0.test/p${i}`,
      );
      assert.equal(
        await answeredBy(nginx.port, 'h0.test', `/p${i - 1}`),
        h0 ? '404' : 'dropped',
        `change ${i}: the path h0.test had before`,
      );
    }
    // A reload or a restart would have started other workers.
    assert.deepEqual(await processesOf(nginx.master.pid as number), processes, 'the same master and workers');
    ws.close();
  } finally {
    await nginx.close();
  }
}

async function requestAfterPutSeesNewTableInEveryWorker(): Promise<void> {
  const nginx = await startDynamicNginx(tableOf([]), { workerProcesses: 4 });
  try {
    const seen = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const expected = pod(i % 2);
      // No waiting for the workers' reports: each checks the table at every request.
      await putTable(
        nginx.controlSocket,
        serializeTable(tableOf([{ host: 'x.test', path: '/', pods: [expected] }]), `v${i}`),
        5_000,
      );
      assert.equal(await answeredBy(nginx.port, 'x.test'), expected.name, `table ${i}`);
      for (const r of (await nginx.versions()).reports) seen.add(r.pid);
    }
    assert.equal((await nginx.versions()).workers, 4);
    assert.equal(seen.size, 4, 'every worker reported');
  } finally {
    await nginx.close();
  }
}

async function keepsTableAcrossReloadAndKill(): Promise<void> {
  const table = tableOf([{ host: 'k.test', path: '/', pods: [pod(2)] }]);
  const nginx = await startDynamicNginx(table, { workerProcesses: 2 });
  try {
    const version = nginx.version;
    const before = (await nginx.versions()).reports.map((r) => r.pid);

    nginx.master.signal('SIGHUP');
    const reloaded = await eventually(
      async () => {
        const v = await nginx.versions();
        return v.reports.length === 2 && v.reports.every((r) => !before.includes(r.pid) && r.version === version)
          ? v
          : null;
      },
      'new workers to serve the table after a reload',
      10_000,
    );
    assert.equal(reloaded.stored, version);
    assert.equal(await answeredBy(nginx.port, 'k.test'), 'dyn-2');

    const victim = reloaded.reports[0] as { id: number; pid: number };
    process.kill(victim.pid, 'SIGKILL');
    const respawned = await eventually(
      async () => {
        const report = (await nginx.versions()).reports.find((r) => r.id === victim.id);
        return report !== undefined && report.pid !== victim.pid ? report : null;
      },
      'the master to start a worker in place of the one killed',
      10_000,
    );
    assert.equal(respawned.version, version, 'the new worker serves the stored table');

    await nginx.restart();
    const fresh = await nginx.versions();
    assert.equal(fresh.stored, null, 'no table after a restart');
    assert.ok(fresh.reports.every((r) => r.version === null));
    assert.equal(await answeredBy(nginx.port, 'k.test'), 'dropped', 'every host unknown until a table is put');
    await nginx.apply(table);
    assert.equal(await answeredBy(nginx.port, 'k.test'), 'dyn-2');
  } finally {
    await nginx.close();
  }
}

/**
 * Tables put while the old workers of a reload still run (the master tells them to quit
 * some 100 ms after the new ones start, and meanwhile they load each new table too): once
 * they are gone, the report under each worker id is the new worker's, serving the last table.
 */
async function reportsOfNewWorkersAfterReload(): Promise<void> {
  const nginx = await startDynamicNginx(tableOf([]), { workerProcesses: 2 });
  const master = nginx.master.pid as number;
  try {
    for (let i = 1; i <= 10; i++) {
      const before = new Set((await childrenOf(master)).map((c) => c.pid));
      nginx.master.signal('SIGHUP');
      await eventually(async () => {
        const v = await nginx.versions();
        return v.reports.length === 2 && v.reports.every((r) => !before.has(r.pid));
      }, `the new workers of reload ${i} to report`);
      const version = `during-reload-${i}`;
      await putTable(
        nginx.controlSocket,
        serializeTable(tableOf([{ host: 'x.test', path: '/', pods: [pod(i % 2)] }]), version),
        5_000,
      );
      await eventually(async () => {
        const live = new Set((await childrenOf(master)).map((c) => c.pid));
        return [...before].every((pid) => !live.has(pid));
      }, `the old workers of reload ${i} to exit`);
      let seen = '';
      try {
        await eventually(async () => {
          const [v, children] = await Promise.all([nginx.versions(), childrenOf(master)]);
          const live = new Set(children.map((c) => c.pid));
          seen = `live workers ${[...live].join(', ')}; reports ${JSON.stringify(v.reports)}`;
          return v.reports.length === 2 && v.reports.every((r) => live.has(r.pid) && r.version === version);
        }, `every worker id to be reported by a live worker serving ${version}`);
      } catch (err) {
        throw new Error(`reload ${i}: ${(err as Error).message}: ${seen}`);
      }
      assert.equal(await answeredBy(nginx.port, 'x.test'), pod(i % 2).name, `reload ${i}`);
    }
  } finally {
    await nginx.close();
  }
}

async function keepsBalancingStateOfUnchangedRoutes(): Promise<void> {
  const first = tableOf([
    { host: 'same.test', path: '/', pods: [pod(0), pod(1)] },
    { host: 'changed.test', path: '/', pods: [pod(0), pod(1)] },
  ]);
  const second = tableOf([
    { host: 'same.test', path: '/', pods: [pod(0), pod(1)] },
    { host: 'changed.test', path: '/', pods: [pod(0), pod(1), pod(2)] },
    { host: 'new.test', path: '/', pods: [pod(3)] },
  ]);
  const nginx = await startDynamicNginx(first);
  const proxy = await startProxy({ port: 0, host: '127.0.0.1', apiKeyHeader: API_KEY_HEADER });
  try {
    await proxy.apply(first);
    const sequence = async (port: number, apply: (t: typeof first) => Promise<void>): Promise<string[]> => {
      const seen = [await answeredBy(port, 'same.test'), await answeredBy(port, 'changed.test')];
      await apply(second);
      for (const host of ['same.test', 'changed.test', 'changed.test', 'new.test'])
        seen.push(await answeredBy(port, host));
      return seen;
    };
    const viaNginx = await sequence(nginx.port, (t) => nginx.apply(t));
    const viaProxy = await sequence(proxy.port, (t) => proxy.apply(t));
    assert.deepEqual(viaNginx, viaProxy);
    assert.deepEqual(viaNginx, ['dyn-0', 'dyn-0', 'dyn-1', 'dyn-0', 'dyn-1', 'dyn-3']);
  } finally {
    await Promise.all([nginx.close(), proxy.close()]);
  }
}

async function retriesFailedPodAfterFailTimeout(): Promise<void> {
  // First in pod-name order: the first request tries it, and it fails.
  const comeback = { name: 'dyn-0-back', ...(await deadAddress('127.0.0.104')) };
  const table = tableOf([{ host: 'back.test', path: '/', pods: [comeback, pod(1)] }]);
  const planes = await Promise.all([startNginx(table), startDynamicNginx(table)]);
  let revived: TestPod | null = null;
  try {
    const ask = (): Promise<string[]> => Promise.all(planes.map((p) => answeredBy(p.port, 'back.test')));
    const seen = [await ask()];
    // nginx leaves a failed pod out while now - checked <= 10 s, in whole seconds.
    await delay(12_000);
    revived = await startPod(comeback.name, comeback.ip, { port: comeback.port });
    for (let i = 0; i < 8; i++) seen.push(await ask());
    const [documented, dynamic] = [seen.map((s) => s[0]), seen.map((s) => s[1])];
    assert.deepEqual(dynamic, documented);
    assert.deepEqual(documented, [
      'dyn-1',
      'dyn-1',
      'dyn-1',
      'dyn-0-back',
      'dyn-1',
      'dyn-0-back',
      'dyn-1',
      'dyn-0-back',
      'dyn-1',
    ]);
  } finally {
    await Promise.all([...planes.map((p) => p.close()), revived?.close()]);
  }
}

async function runsLuaWorkersCouldNotRead(t: TestContext): Promise<void> {
  if (process.getuid?.() !== 0) {
    t.skip('only as root do the workers run as another user (nobody)');
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'k8s-router-private-lua-'));
  try {
    await cp(bundledLuaDir(), dir, { recursive: true });
    await chmod(dir, 0o700);
    const nginx = await startDynamicNginx(tableOf([{ host: 'private.test', path: '/', pods: [pod(3)] }]), {
      luaDir: dir,
      workerProcesses: 2,
    });
    try {
      for (let i = 0; i < 4; i++) assert.equal(await answeredBy(nginx.port, 'private.test'), 'dyn-3');
      nginx.master.signal('SIGHUP');
      await eventually(
        async () =>
          (await nginx.versions()).reports.every((r) => r.version === nginx.version) &&
          (await answeredBy(nginx.port, 'private.test')) === 'dyn-3',
        'the reloaded workers to serve',
        10_000,
      );
    } finally {
      await nginx.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function takesTablesOnlyFromTheRouter(t: TestContext): Promise<void> {
  const nginx = await startDynamicNginx(tableOf([]));
  try {
    assert.equal((await stat(dirname(nginx.controlSocket))).mode & 0o777, 0o700);
    if (process.getuid?.() !== 0) {
      t.skip('only root can run a process as another user to try');
      return;
    }
    // nobody tries to put a table. The child starts as root and becomes nobody itself: this
    // Node may live where nobody cannot run it from (a home or a mktemp directory of 0700).
    const target = JSON.stringify({ socketPath: nginx.controlSocket, method: 'PUT', path: '/table' });
    const onError = "on('error', (e) => process.stdout.write(e.code))";
    const becomeNobody = 'process.setgroups([]); process.setgid(65534); process.setuid(65534);';
    const script = `${becomeNobody} require('node:http').request(${target}).${onError}.end('x')`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += String(d)));
    await once(child, 'exit');
    assert.equal(out, 'EACCES');
  } finally {
    await nginx.close();
  }
}

describe('dynamic nginx', { timeout: 120_000 }, () => {
  it(
    'serves 100 route changes with no reload, no new process, a WebSocket open across them',
    hundredChangesWithoutReload,
  );

  it(
    'routes a request made after a PUT was answered by the new table, in every worker',
    requestAfterPutSeesNewTableInEveryWorker,
  );

  it(
    'keeps its table across a reload and a worker killed, and starts without one after a restart',
    keepsTableAcrossReloadAndKill,
  );

  it(
    'reports every worker id by its new worker after a reload, tables put meanwhile included',
    reportsOfNewWorkersAfterReload,
  );

  it(
    'keeps the balancing state of routes whose pods did not change, not of others, as the proxy',
    keepsBalancingStateOfUnchangedRoutes,
  );

  it(
    'tries a failed pod again after fail_timeout (whole seconds), cleared by its answer, as nginx',
    retriesFailedPodAfterFailTimeout,
  );

  it('runs Lua the workers could not read: the master loads it all before they start', runsLuaWorkersCouldNotRead);

  it(
    'takes tables only from the router: the control socket is in a directory no other user may enter',
    takesTablesOnlyFromTheRouter,
  );
});
