import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { dirname } from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import { defaultConfig } from '../src/core/config.js';
import { buildRouteTable, type RouteTable } from '../src/core/route-table.js';
import { spawnNginxMaster } from '../nginx/master.js';
import { NginxApplyError, resolveFiles } from '../nginx/process.js';
import { CONFIG_VERSION_PATH, renderNginxConf } from '../nginx/render.js';
import { readConfigVersion } from '../nginx/status.js';
import { childrenOf, parentOf, processTitle, waitForRetirement } from '../nginx/workers.js';
import { eventually } from './support/eventually.js';
import { NGINX_BINARY } from './support/nginx-check.js';
import {
  Cleanups,
  get,
  isAlive,
  startManager as startManagerIn,
  startNamedPod,
  statusPortOf,
  tableFor,
  type Render,
} from './support/nginx-manager.js';
import type { NginxDataPlaneOptions } from '../nginx/process.js';
import type { RouterConfig } from '../src/core/config.js';
import { pod } from './support/objects.js';

// A real nginx on loopback high ports, run by the manager in a temp prefix, proxying to
// tiny Node servers on 127.0.0.x that stand in for pods and answer with their name.

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

const startPod = (name: string, ip: string) => startNamedPod(cleanups, name, ip);
const startManager = (overrides: Partial<NginxDataPlaneOptions> = {}, renderWith?: (config: RouterConfig) => Render) =>
  startManagerIn(cleanups, overrides, renderWith);

async function startsAndServes(): Promise<void> {
  const a = await startPod('pod-a', '127.0.0.2');
  const { nginx, config, port } = await startManager();
  await nginx.apply(tableFor(config, [a]));
  assert.deepEqual(await get(port), { status: 200, body: 'pod-a' });
  const outcome = nginx.lastOutcome();
  assert.equal(outcome.ok, true);
  assert.match(outcome.configVersion ?? '', /^[0-9a-f]{16}$/);
  assert.equal(outcome.reloads, 0);
  assert.ok(outcome.pid !== null && isAlive(outcome.pid));
}

async function reloadsGracefully(): Promise<void> {
  const a = await startPod('pod-a', '127.0.0.2');
  const b = await startPod('pod-b', '127.0.0.3');
  const { nginx, config, port } = await startManager();
  await nginx.apply(tableFor(config, [a]));
  const pid = nginx.lastOutcome().pid;
  const before = nginx.lastOutcome().configVersion;

  await nginx.apply(tableFor(config, [b]));
  // Right after apply resolves, every new connection must reach the new config.
  for (let i = 0; i < 20; i++) assert.deepEqual(await get(port), { status: 200, body: 'pod-b' });
  const outcome = nginx.lastOutcome();
  assert.equal(outcome.reloads, 1);
  assert.equal(outcome.pid, pid);
  assert.notEqual(outcome.configVersion, before);
}

async function noReloadForUnchangedTable(): Promise<void> {
  const a = await startPod('pod-a', '127.0.0.2');
  const b = await startPod('pod-b', '127.0.0.3');
  const { nginx, config } = await startManager();
  await nginx.apply(tableFor(config, [a, b]));
  const version = nginx.lastOutcome().configVersion;
  const errorLog = await readFile(nginx.files.errorLog, 'utf8');

  await nginx.apply(tableFor(config, [b, a]));
  await nginx.apply(tableFor(config, [a, b]));
  const outcome = nginx.lastOutcome();
  assert.equal(outcome.reloads, 0);
  assert.equal(outcome.unchanged, 2);
  assert.equal(outcome.configVersion, version);
  // A reload would show up in the error log as the master's "signal 1 (SIGHUP) received".
  assert.equal(await readFile(nginx.files.errorLog, 'utf8'), errorLog);
}

async function neverLoadsARefusedConfig(): Promise<void> {
  const a = await startPod('pod-a', '127.0.0.2');
  const b = await startPod('pod-b', '127.0.0.3');
  let broken = false;
  const { nginx, config, port, prefix } = await startManager({}, (config) => (table, runtime) => {
    const text = renderNginxConf(table, { ...config, runtime });
    return broken ? text.replace('http {', 'http {\nno_such_directive on;') : text;
  });
  await nginx.apply(tableFor(config, [a]));
  const liveConf = await readFile(nginx.files.conf, 'utf8');

  broken = true;
  await assert.rejects(nginx.apply(tableFor(config, [b])), (err: unknown) => {
    assert.ok(err instanceof NginxApplyError);
    assert.equal(err.code, 'KR_NGINX_CONFIG_REFUSED');
    assert.match(err.message, /unknown directive "no_such_directive"/);
    return true;
  });
  assert.deepEqual(await get(port), { status: 200, body: 'pod-a' });
  assert.equal(await readFile(nginx.files.conf, 'utf8'), liveConf);
  assert.deepEqual(
    (await readdir(prefix)).filter((f) => f.includes('candidate')),
    [],
  );
  const outcome = nginx.lastOutcome();
  assert.equal(outcome.ok, false);
  assert.equal(outcome.error?.code, 'KR_NGINX_CONFIG_REFUSED');
  assert.match(outcome.error?.message ?? '', /no_such_directive/);
  assert.equal(outcome.reloads, 0);
  assert.equal(outcome.failures, 1);

  broken = false;
  await nginx.apply(tableFor(config, [b]));
  assert.deepEqual(await get(port), { status: 200, body: 'pod-b' });
}

async function keepsOldConfigWhenReloadFails(): Promise<void> {
  const a = await startPod('pod-a', '127.0.0.2');
  const b = await startPod('pod-b', '127.0.0.3');
  let takenPort: number | null = null;
  const { nginx, config, port } = await startManager(
    { confirmTimeoutMs: 2_000 },
    (config) => (table, runtime) => renderNginxConf(table, { ...config, port: takenPort ?? config.port, runtime }),
  );
  await nginx.apply(tableFor(config, [a]));
  const liveConf = await readFile(nginx.files.conf, 'utf8');

  // Someone else holds the new port: nginx -t does not bind, so only the reload can tell.
  const squatter = await startPod('squatter', '127.0.0.1');
  takenPort = squatter.port;
  await assert.rejects(nginx.apply(tableFor(config, [b])), (err: unknown) => {
    assert.ok(err instanceof NginxApplyError);
    assert.equal(err.code, 'KR_NGINX_RELOAD_FAILED');
    assert.match(err.message, /Address already in use/);
    return true;
  });
  assert.deepEqual(await get(port), { status: 200, body: 'pod-a' });
  assert.equal(await readFile(nginx.files.conf, 'utf8'), liveConf);
  assert.equal(nginx.lastOutcome().error?.code, 'KR_NGINX_RELOAD_FAILED');

  // nginx retries a bind on its own, so it may yet have loaded the new config: the same
  // table as before is not taken for unchanged, it is reloaded to be sure.
  takenPort = null;
  await nginx.apply(tableFor(config, [a]));
  assert.equal(nginx.lastOutcome().unchanged, 0);
  assert.equal(nginx.lastOutcome().reloads, 1);
  assert.deepEqual(await get(port), { status: 200, body: 'pod-a' });
}

async function restartsWhenKilled(): Promise<void> {
  const a = await startPod('pod-a', '127.0.0.2');
  const { nginx, config, port } = await startManager({ restartBackoffMs: { initialMs: 50, maxMs: 1_000 } });
  await nginx.apply(tableFor(config, [a]));
  const killed = nginx.lastOutcome().pid as number;
  const orphans = await childrenOf(killed);
  assert.ok(orphans.length > 0);

  // Killed outright, the master leaves its workers behind, still listening on its ports.
  process.kill(killed, 'SIGKILL');
  await eventually(() => nginx.lastOutcome().restarts === 1, 'nginx to be restarted', 10_000);
  const outcome = nginx.lastOutcome();
  assert.equal(outcome.unexpectedExits, 1);
  assert.ok(outcome.pid !== null && outcome.pid !== killed && isAlive(outcome.pid));
  assert.equal(isAlive(killed), false);
  // They were told to quit (no init may reap them here, so "gone" includes zombies).
  await eventually(
    async () => (await waitForRetirement(orphans, 0)).length === 0,
    'the orphaned workers to exit',
    10_000,
  );
  for (const orphan of orphans)
    assert.ok(!/worker process$/.test((await processTitle(orphan)) ?? ''), `worker ${orphan.pid} still runs`);
  const answer = await readConfigVersion(statusPortOf(await readFile(nginx.files.conf, 'utf8')));
  assert.equal(await parentOf(answer?.workerPid ?? 0), outcome.pid);
  assert.deepEqual(await get(port), { status: 200, body: 'pod-a' });
}

/** Requests from `clients` concurrent loops until six reloads are done and at least `minimum` were sent. */
async function loadDuringReloads(agent: Agent | undefined, minimum: number) {
  const a = await startPod('pod-a', '127.0.0.2');
  const b = await startPod('pod-b', '127.0.0.3');
  const { nginx, config, port } = await startManager();
  const tables = [tableFor(config, [a]), tableFor(config, [a, b])];
  await nginx.apply(tables[0] as RouteTable);

  let reloading = true;
  let sent = 0;
  let retried = 0;
  const failures: string[] = [];
  const bodies = new Set<string>();
  const client = async (): Promise<void> => {
    while (reloading || sent < minimum) {
      sent++;
      try {
        const reply = await get(port, { agent });
        if (reply.status !== 200) failures.push(`status ${reply.status}`);
        if (reply.retried) retried++;
        bodies.add(reply.body);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  };
  const load = Promise.all(Array.from({ length: 8 }, client));
  const reloadMs: number[] = [];
  try {
    for (let i = 1; i <= 6; i++) {
      await nginx.apply(tables[i % 2] as RouteTable);
      reloadMs.push(Math.round(nginx.lastOutcome().lastApplyMs ?? 0));
    }
  } finally {
    reloading = false;
    await load;
  }
  return { sent, retried, failures, bodies, reloads: nginx.lastOutcome().reloads, reloadMs };
}

async function retiresALeftoverNginx(): Promise<void> {
  const a = await startPod('pod-a', '127.0.0.2');
  const b = await startPod('pod-b', '127.0.0.3');
  const { nginx, config, port, prefix } = await startManager();
  // What a router killed outright leaves behind: its nginx, in its own process group,
  // still serving the last config from this prefix and holding the port.
  const files = resolveFiles(prefix);
  await mkdir(files.tempDir, { recursive: true });
  await mkdir(dirname(files.errorLog), { recursive: true });
  const runtime = { pidFile: files.pid, errorLog: files.errorLog, accessLog: files.accessLog, tempDir: files.tempDir };
  await writeFile(files.conf, renderNginxConf(tableFor(config, [a]), { ...config, runtime }));
  const leftover = spawnNginxMaster({
    nginxBinary: NGINX_BINARY,
    prefix,
    confPath: files.conf,
    errorLog: files.errorLog,
  });
  cleanups.add(async () => {
    await leftover.stop({ gracefulMs: 2_000, fastMs: 1_000 });
  });
  await eventually(
    async () => (await get(port).catch(() => null))?.body === 'pod-a',
    'the leftover nginx to serve',
    10_000,
  );

  await nginx.apply(tableFor(config, [b]));
  assert.deepEqual(await get(port), { status: 200, body: 'pod-b' });
  assert.equal(isAlive(leftover.pid as number), false, 'the leftover master is gone');
}

async function servesVersionOnLoopbackOnly(): Promise<void> {
  const a = await startPod('pod-a', '127.0.0.2');
  const { nginx, config, port } = await startManager();
  await nginx.apply(tableFor(config, [a]));
  const conf = await readFile(nginx.files.conf, 'utf8');
  const statusPort = statusPortOf(conf);
  assert.ok(statusPort > 0 && statusPort !== port);
  const answer = await readConfigVersion(statusPort);
  assert.equal(answer?.version, nginx.lastOutcome().configVersion);
  const master = nginx.lastOutcome().pid as number;
  assert.ok(
    (await readFile(`/proc/${master}/task/${master}/children`, 'utf8')).split(' ').includes(String(answer?.workerPid)),
  );
  // The status server listens on 127.0.0.1 only, not on the other loopback addresses.
  await assert.rejects(
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.2', port: statusPort, path: CONFIG_VERSION_PATH, agent: false }, resolve);
      req.on('error', reject);
      req.end();
    }),
    /ECONNREFUSED/,
  );
  // On the routing port the path is nothing special: unknown hosts get the default server's 444.
  await assert.rejects(get(port, { host: 'unknown.test', path: CONFIG_VERSION_PATH }), /socket hang up|ECONNRESET/);
  assert.deepEqual(await get(port, { path: CONFIG_VERSION_PATH }), { status: 200, body: 'pod-a' });
}

async function runsManagersSideBySide(): Promise<void> {
  const a = await startPod('pod-a', '127.0.0.2');
  const b = await startPod('pod-b', '127.0.0.3');
  const first = await startManager();
  const second = await startManager();
  await Promise.all([first.nginx.apply(tableFor(first.config, [a])), second.nginx.apply(tableFor(second.config, [b]))]);
  assert.deepEqual(await get(first.port), { status: 200, body: 'pod-a' });
  assert.deepEqual(await get(second.port), { status: 200, body: 'pod-b' });
  await first.nginx.close();
  assert.deepEqual(await get(second.port), { status: 200, body: 'pod-b' });
}

async function closeStopsNginx(): Promise<void> {
  const a = await startPod('pod-a', '127.0.0.2');
  const { nginx, config, port } = await startManager();
  await nginx.apply(tableFor(config, [a]));
  const pid = nginx.lastOutcome().pid as number;
  const workers = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).split(' ').filter(Boolean).map(Number);
  assert.ok(workers.length > 0);

  await nginx.close();
  assert.equal(isAlive(pid), false);
  for (const worker of workers) assert.equal(isAlive(worker), false, `worker ${worker} still runs`);
  assert.equal(nginx.lastOutcome().pid, null);
  await assert.rejects(get(port), /ECONNREFUSED/);
  await assert.rejects(
    nginx.apply(tableFor(config, [a])),
    (err: unknown) => err instanceof NginxApplyError && err.code === 'KR_NGINX_CLOSED',
  );
}

describe('nginx process manager', { timeout: 120_000 }, () => {
  after(() => cleanups.run());

  it('starts nginx and serves the table', startsAndServes);

  it('reloads gracefully to a new table: same master, new pods', reloadsGracefully);

  it('does not reload nginx for an unchanged table', noReloadForUnchangedTable);

  it('never loads a config nginx -t refuses: the old one keeps serving and apply says why', neverLoadsARefusedConfig);

  it(
    'keeps the old config when nginx -t passes but the reload fails (a port taken by someone else)',
    keepsOldConfigWhenReloadFails,
  );

  it('restarts nginx with the last good config when it is killed', restartsWhenKilled);

  it('loses no request while reloading: concurrent requests on fresh connections', async (t) => {
    const result = await loadDuringReloads(undefined, 400);
    t.diagnostic(
      `${result.sent} requests, ${result.failures.length} failed, reloads took ${result.reloadMs.join(', ')} ms`,
    );
    assert.equal(result.reloads, 6);
    assert.deepEqual(result.failures, []);
    assert.deepEqual([...result.bodies].sort(), ['pod-a', 'pod-b']);
  });

  it('loses no request while reloading: concurrent keep-alive requests', async (t) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    cleanups.add(async () => agent.destroy());
    const result = await loadDuringReloads(agent, 400);
    t.diagnostic(
      `${result.sent} requests, ${result.failures.length} failed, ` +
        `${result.retried} re-sent after nginx closed an idle kept-alive connection`,
    );
    assert.equal(result.reloads, 6);
    assert.deepEqual(result.failures, []);
    assert.deepEqual([...result.bodies].sort(), ['pod-a', 'pod-b']);
  });

  it('retires the nginx a router killed outright left running on its prefix, then serves', retiresALeftoverNginx);

  it('serves the config version on loopback only, never as a routed host', servesVersionOnLoopbackOnly);

  it('runs managers side by side without sharing files or ports', runsManagersSideBySide);

  it('close stops nginx and its workers, and later applies are refused', closeStopsNginx);

  it('reports a missing nginx binary as a failed start', async () => {
    const { nginx, config } = await startManager({ nginxBinary: '/nonexistent/nginx' });
    await assert.rejects(nginx.apply(tableFor(config, [])), /nginx not found at \/nonexistent\/nginx/);
    assert.equal(nginx.lastOutcome().ok, false);
  });
});

describe('status server in the rendered config', () => {
  const config = defaultConfig({ port: '18080', listenAddress: '127.0.0.1' });
  const runtime = { pidFile: '/p/nginx.pid', errorLog: '/p/error.log', accessLog: '/p/access.log', tempDir: '/p/temp' };
  const table = buildRouteTable(config, [pod('a', { hosts: 'h.example.com', paths: '80:/' })], []);

  it('is rendered only when asked for, on 127.0.0.1, and never as a default server', () => {
    assert.ok(!renderNginxConf(table, { ...config, runtime }).includes(CONFIG_VERSION_PATH));
    for (const routes of [table, buildRouteTable(config, [], [])]) {
      const conf = renderNginxConf(routes, {
        ...config,
        runtime: { ...runtime, status: { port: 18081, configVersion: 'abc123' } },
      });
      assert.ok(conf.includes(`\nlisten 127.0.0.1:18081;\n`));
      assert.ok(conf.includes(`\nreturn 200 "abc123 $pid";\n`));
      assert.equal(conf.match(/^listen .*:18081.*$/gm)?.length, 1);
      assert.equal(conf.match(/default_server/g)?.length, 1);
      assert.match(conf, /^listen 127\.0\.0\.1:18080 default_server;$/m);
    }
  });

  it('refuses a status port equal to the routing port and a version that is not a plain word', () => {
    assert.throws(
      () =>
        renderNginxConf(table, { ...config, runtime: { ...runtime, status: { port: 18080, configVersion: 'v1' } } }),
      /must differ/,
    );
    for (const configVersion of ['', 'a b', 'v$pid', 'v";']) {
      assert.throws(
        () => renderNginxConf(table, { ...config, runtime: { ...runtime, status: { port: 18081, configVersion } } }),
        /not a plain word/,
      );
    }
  });
});
