import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { RouteTable } from '../src/core/route-table.js';
import { patchTable, putTable } from '../nginx/control-client.js';
import { dynamicDelivery, type DynamicDelivery } from '../nginx/dynamic-delivery.js';
import { bundledLuaDir, findLuaModules } from '../nginx/lua-modules.js';
import { deltaTo, wholeTable } from '../nginx/table-wire.js';
import { childrenOf } from '../nginx/workers.js';
import { startProxy } from '../proxy/server.js';
import { tableOf, type RouteSpec } from './conformance/harness.js';
import { eventually } from './support/eventually.js';
import { API_KEY_HEADER, startDynamicNginx, type DynamicNginx } from './support/dynamic-nginx.js';
import { NGINX_BINARY } from './support/nginx-check.js';
import { startPod, type TestPod } from './support/pods.js';

// Dynamic nginx taking tables as deltas: the router sends what changed since the table
// every worker serves, each worker applies it to the table it has, and whenever nginx does
// not hold that table (another table stored since, a restart) the whole table goes instead.
// Whatever the path, nginx ends up routing as a whole send of the same table would.

let pods: TestPod[] = [];
before(async () => {
  pods = await Promise.all([0, 1, 2, 3].map((i) => startPod(`delta-${i}`, `127.0.0.${110 + i}`)));
});
after(() => Promise.all(pods.map((p) => p.close())));

const pod = (i: number): TestPod => pods[i] as TestPod;

/**
 * What a GET of `path` on `host`, through a new connection, got: 'dropped', or the status
 * and the pod or the Location (with the data plane's own port written as PORT).
 */
function answer(port: number, host: string, path = '/', key?: string): Promise<string> {
  const headers: Record<string, string> = { host, ...(key === undefined ? {} : { [API_KEY_HEADER]: key }) };
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => {
        const pod = typeof res.headers['x-pod'] === 'string' ? ` ${res.headers['x-pod']}` : '';
        const { location: to } = res.headers;
        const location = typeof to === 'string' ? ` -> ${to.replace(`:${port}/`, ':PORT/')}` : '';
        resolve(`${res.statusCode}${pod}${location}`);
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) =>
      err.code === 'ECONNRESET' || /socket hang up/.test(err.message) ? resolve('dropped') : reject(err),
    );
  });
}

/** The router's delivery, as the manager runs it, for a test's dynamic nginx. */
async function deliveryTo(nginx: DynamicNginx): Promise<DynamicDelivery> {
  const lua = await findLuaModules(NGINX_BINARY);
  if (!lua.found) throw new Error(lua.problem);
  return dynamicDelivery({
    render: { port: nginx.port, listenAddress: '127.0.0.1', apiKeyHeader: API_KEY_HEADER },
    controlSocket: nginx.controlSocket,
    luaModules: lua.modules,
    luaDir: bundledLuaDir(),
    timeoutMs: 10_000,
  });
}

async function send(delivery: DynamicDelivery, nginx: DynamicNginx, table: RouteTable): Promise<string | null> {
  assert.equal(await delivery.send(table, { pid: nginx.master.pid as number }), 'sent');
  return delivery.lastSend();
}

/** Waits until every live worker of `nginx` reports `version`. */
async function everyWorkerServes(nginx: DynamicNginx, version: string): Promise<void> {
  const live = new Set((await childrenOf(nginx.master.pid as number)).map((c) => c.pid));
  await eventually(
    async () => {
      const v = await nginx.versions();
      return v.reports.length === v.workers && v.reports.every((r) => r.version === version && live.has(r.pid));
    },
    `every worker to serve ${version}`,
    10_000,
  );
}

async function deltaServedAfterPatchInEveryWorker(): Promise<void> {
  const nginx = await startDynamicNginx(tableOf([]), { workerProcesses: 4 });
  try {
    const others: RouteSpec[] = Array.from({ length: 50 }, (_, i) => ({
      host: `o${i}.test`,
      path: '/',
      pods: [pod(3)],
    }));
    let previous = wholeTable(tableOf(others), 'd0');
    await putTable(nginx.controlSocket, previous.text, 5_000);
    for (let i = 1; i <= 40; i++) {
      const expected = pod(i % 2);
      const next = tableOf([...others, { host: 'x.test', path: '/', pods: [expected] }]);
      const delta = deltaTo(previous.sent, next, `d${i}`);
      assert.ok(delta !== null, `table ${i} goes as a delta`);
      assert.equal((delta.text.match(/\n/g) ?? []).length, 3, `table ${i}: a header, one route line, the end line`);
      // No waiting for the workers' reports: each checks the table at every request.
      const stored = await patchTable(nginx.controlSocket, delta.text, 5_000);
      assert.ok(stored !== null && stored !== 'whole-table-wanted', `table ${i} stored: ${JSON.stringify(stored)}`);
      assert.equal(stored.stored, `d${i}`);
      assert.equal(await answer(nginx.port, 'x.test'), `200 ${expected.name}`, `table ${i}`);
      assert.equal(await answer(nginx.port, `o${i}.test`), '200 delta-3', `table ${i}: an unchanged host`);
      previous = delta;
    }
    await everyWorkerServes(nginx, 'd40');
  } finally {
    await nginx.close();
  }
}

async function wholeTableWhenNginxHoldsAnother(): Promise<void> {
  const first = tableOf([{ host: 'a.test', path: '/', pods: [pod(0)] }]);
  const nginx = await startDynamicNginx(tableOf([]), { workerProcesses: 2 });
  try {
    const delivery = await deliveryTo(nginx);
    assert.equal(await send(delivery, nginx, first), 'whole', 'the first table after a start');
    const second = tableOf([...first.routes.map(specOf), { host: 'b.test', path: '/', pods: [pod(1)] }]);
    assert.equal(await send(delivery, nginx, second), 'delta');

    // Another table stored in between: the delta's base is not nginx's table any more.
    await nginx.apply(tableOf([{ host: 'other.test', path: '/', pods: [pod(2)] }]));
    const third = tableOf([...second.routes.map(specOf), { host: 'c.test', path: '/', pods: [pod(3)] }]);
    assert.equal(await send(delivery, nginx, third), 'whole', 'after another store');
    assert.deepEqual(await answers(nginx, ['a.test', 'b.test', 'c.test', 'other.test']), [
      '200 delta-0',
      '200 delta-1',
      '200 delta-3',
      'dropped',
    ]);

    // A restart the delivery was not told of: nginx holds no table.
    await nginx.restart();
    const fourth = tableOf(third.routes.filter((r) => r.host !== 'a.test').map(specOf));
    assert.equal(await send(delivery, nginx, fourth), 'whole', 'after a restart');
    assert.deepEqual(await answers(nginx, ['a.test', 'b.test', 'c.test']), ['dropped', '200 delta-1', '200 delta-3']);

    // forget(): the next table is whole, whatever nginx holds.
    delivery.forget();
    assert.equal(await send(delivery, nginx, first), 'whole', 'after forget()');
    assert.equal(await send(delivery, nginx, second), 'delta');
    assert.deepEqual(await answers(nginx, ['a.test', 'b.test', 'c.test']), ['200 delta-0', '200 delta-1', 'dropped']);
  } finally {
    await nginx.close();
  }
}

function specOf(route: RouteTable['routes'][number]): RouteSpec {
  return {
    host: route.host,
    path: route.path,
    apiKey: route.apiKey,
    affinity: route.affinity,
    pods: route.backends.map((b) => ({ name: b.pod, ip: b.ip, port: b.port })),
  };
}

async function answers(nginx: DynamicNginx, hosts: string[]): Promise<string[]> {
  const seen: string[] = [];
  for (const host of hosts) seen.push(await answer(nginx.port, host));
  return seen;
}

async function newWorkersBetweenDeltas(): Promise<void> {
  const nginx = await startDynamicNginx(tableOf([]), { workerProcesses: 2 });
  try {
    const delivery = await deliveryTo(nginx);
    const routes = new Map<string, RouteSpec>();
    // Sets (or with no pod, removes) the route of `host` and `path`, and sends the table.
    const step = async (host: string, path: string, pod?: TestPod): Promise<string | null> => {
      if (pod === undefined) routes.delete(`${host}${path}`);
      else routes.set(`${host}${path}`, { host, path, pods: [pod] });
      return send(delivery, nginx, tableOf([...routes.values()]));
    };
    await step('keep.test', '/', pod(1));
    await step('one.test', '/', pod(1));
    await step('gone.test', '/', pod(2));
    await step('two.test', '/a/', pod(2));
    // Lines replaced and removed: the whole text nginx makes from the deltas leaves them out.
    assert.equal(await step('keep.test', '/', pod(0)), 'delta');
    assert.equal(await step('gone.test', '/'), 'delta');

    // New workers load that whole text; then take deltas again.
    await reloaded(nginx);
    assert.equal(await step('three.test', '/', pod(3)), 'delta', 'a reload keeps the table: a delta still fits');
    assert.equal(await step('one.test', '/', pod(2)), 'delta');

    const victim = (await nginx.versions()).reports[0] as { pid: number };
    process.kill(victim.pid, 'SIGKILL');
    assert.equal(await step('four.test', '/', pod(0)), 'delta');
    // Every worker, the new one included, confirmed; each request may reach either.
    for (let i = 0; i < 6; i++) {
      assert.deepEqual(await answers(nginx, ['keep.test', 'one.test', 'three.test', 'four.test', 'gone.test']), [
        '200 delta-0',
        '200 delta-2',
        '200 delta-3',
        '200 delta-0',
        'dropped',
      ]);
      assert.equal(await answer(nginx.port, 'two.test', '/a'), '301 -> http://two.test:PORT/a/');
      assert.equal(await answer(nginx.port, 'two.test', '/a/b'), '200 delta-2');
    }
  } finally {
    await nginx.close();
  }
}

async function deltaKindsAsTheProxy(): Promise<void> {
  const key = Buffer.from('secret one').toString('base64');
  const first = tableOf([
    { host: 'stay.test', path: '/', pods: [pod(0)] },
    { host: 'going.test', path: '/', pods: [pod(1)] },
    { host: 'locked.test', path: '/', pods: [pod(2)] },
    { host: 'sticky.test', path: '/', pods: [pod(0), pod(1), pod(2), pod(3)] },
  ]);
  const second = tableOf([
    { host: 'stay.test', path: '/', pods: [pod(0)] },
    { host: 'new.test', path: '/n/', pods: [pod(3)] },
    { host: 'locked.test', path: '/', pods: [pod(2)], apiKey: key },
    { host: 'sticky.test', path: '/', pods: [pod(0), pod(1), pod(2), pod(3)], affinity: 'ip' },
  ]);
  const nginx = await startDynamicNginx(tableOf([]), { workerProcesses: 1 });
  const proxy = await startProxy({ port: 0, host: '127.0.0.1', apiKeyHeader: API_KEY_HEADER });
  try {
    const delivery = await deliveryTo(nginx);
    await send(delivery, nginx, first);
    await proxy.apply(first);
    const probe = async (port: number): Promise<string[]> => {
      const seen: string[] = [];
      for (const host of ['stay.test', 'going.test', 'new.test', 'locked.test']) seen.push(await answer(port, host));
      seen.push(await answer(port, 'new.test', '/n'), await answer(port, 'locked.test', '/', key));
      for (let i = 0; i < 6; i++) seen.push(await answer(port, 'sticky.test'));
      return seen;
    };
    const before = [await probe(nginx.port), await probe(proxy.port)];
    assert.equal(await send(delivery, nginx, second), 'delta');
    await proxy.apply(second);
    const afterDelta = await probe(nginx.port);
    assert.deepEqual(afterDelta, await probe(proxy.port), 'dynamic nginx after the delta, the proxy after the table');
    assert.deepEqual(before[0], before[1]);
    // The changes themselves: host gone, host added (with its redirect), key set, affinity ip.
    assert.deepEqual(afterDelta.slice(0, 6), [
      '200 delta-0',
      'dropped',
      '404',
      '403',
      '301 -> http://new.test:PORT/n/',
      '200 delta-2',
    ]);
    assert.equal(
      new Set(afterDelta.slice(6)).size,
      1,
      `one pod for one client address: ${afterDelta.slice(6).join(', ')}`,
    );
    assert.equal(new Set((before[0] as string[]).slice(6)).size, 4, 'round robin before');
  } finally {
    await Promise.all([nginx.close(), proxy.close()]);
  }
}

interface Edit {
  id: string;
  /** The route's pod, or null to remove the route. */
  pod: number | null;
  locked: boolean;
  sticky: boolean;
}

/** Edits of a table over a few hosts and paths that nest: routes set (one pod each, some locked) or removed. */
function editsArbitrary(): fc.Arbitrary<Edit[]> {
  const edit = fc.record({
    id: fc.constantFrom(
      ...['a.test', 'b.test', 'c.test'].flatMap((h) => ['/', '/x', '/x/', '/x/y', '/y/'].map((p) => `${h} ${p}`)),
    ),
    pod: fc.option(fc.integer({ min: 0, max: 3 }), { freq: 4 }),
    locked: fc.boolean(),
    sticky: fc.boolean(),
  });
  return fc.array(edit, { minLength: 1, maxLength: 4 });
}

/** `routes` (by id) with `edits` made. */
function edited(routes: ReadonlyMap<string, RouteSpec>, edits: readonly Edit[]): Map<string, RouteSpec> {
  const next = new Map(routes);
  for (const e of edits) {
    const [host, path] = e.id.split(' ') as [string, string];
    if (e.pod === null) next.delete(e.id);
    else
      next.set(e.id, {
        host,
        path,
        pods: [pod(e.pod)],
        apiKey: e.locked ? Buffer.from('k').toString('base64') : null,
        affinity: e.sticky ? 'ip' : null,
      });
  }
  return next;
}

const PROBE_PATHS = ['/', '/x', '/x/', '/x/y', '/x/yz', '/y', '/y/', '/z'];

async function routingOf(port: number): Promise<string[]> {
  const seen: string[] = [];
  for (const host of ['a.test', 'b.test', 'c.test', 'd.test']) {
    for (const path of PROBE_PATHS) seen.push(`${host}${path} ${await answer(port, host, path)}`);
  }
  return seen;
}

/** Reloads `nginx` and waits until new workers serve its table. */
async function reloaded(nginx: DynamicNginx): Promise<void> {
  const before = (await childrenOf(nginx.master.pid as number)).map((c) => c.pid);
  nginx.master.signal('SIGHUP');
  await eventually(
    async () => {
      const v = await nginx.versions();
      return v.reports.length === v.workers && v.reports.every((r) => !before.includes(r.pid) && r.version !== null);
    },
    'new workers after a reload',
    10_000,
  );
}

async function deltasEndAsAWholeSend(): Promise<void> {
  const [viaDeltas, whole] = await Promise.all([
    startDynamicNginx(tableOf([]), { workerProcesses: 2 }),
    startDynamicNginx(tableOf([]), { workerProcesses: 1 }),
  ]);
  try {
    const delivery = await deliveryTo(viaDeltas);
    const kinds: (string | null)[] = [];
    // The delivery and its nginx go on from run to run: each run's first table is a delta too.
    let routes = new Map<string, RouteSpec>();
    await fc.assert(
      fc.asyncProperty(
        fc.array(editsArbitrary(), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        async (steps, reload) => {
          for (const [i, edits] of steps.entries()) {
            // New workers in the middle: they load the whole text nginx made from the deltas.
            if (reload && i === steps.length - 1) await reloaded(viaDeltas);
            routes = edited(routes, edits);
            kinds.push(await send(delivery, viaDeltas, tableOf([...routes.values()])));
          }
          await whole.apply(tableOf([...routes.values()]));
          // Twice: each request may reach either worker.
          assert.deepEqual(await routingOf(viaDeltas.port), await routingOf(whole.port));
          assert.deepEqual(await routingOf(viaDeltas.port), await routingOf(whole.port));
        },
      ),
      // No shrinking: the nginx and the delivery go on from run to run, so a smaller
      // counterexample would not replay alone, and each failed run can take the delivery's
      // whole 10 s timeout.
      { numRuns: 12, seed: 15, endOnFailure: true },
    );
    const deltas = kinds.filter((k) => k === 'delta').length;
    assert.ok(deltas > kinds.length / 2, `mostly deltas: ${kinds.join(' ')}`);
  } finally {
    await Promise.all([viaDeltas.close(), whole.close()]);
  }
}

describe('dynamic nginx: tables as deltas', { timeout: 180_000 }, () => {
  it(
    'applies a delta in every worker: a request made after the PATCH was answered sees it',
    deltaServedAfterPatchInEveryWorker,
  );
  it(
    'sends the whole table after a start, forget(), a restart, or another table stored between',
    wholeTableWhenNginxHoldsAnother,
  );
  it('serves the right table in workers started by a reload or after a crash between deltas', newWorkersBetweenDeltas);
  it(
    'removes a host, adds one, sets a key and changes the affinity by a delta, answering as the proxy',
    deltaKindsAsTheProxy,
  );
  it('ends a random sequence of deltas routing as a whole send of the last table does', deltasEndAsAWholeSend);
});
