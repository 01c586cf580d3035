import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, afterEach, describe, it, type TestContext } from 'node:test';
import { readConfigVersion } from '../nginx/status.js';
import { childrenOf, parentOf, processTitle, type ProcessIdentity } from '../nginx/workers.js';
import { eventually } from './support/eventually.js';
import { renderNginxConf } from '../nginx/render.js';
import {
  Cleanups,
  get,
  isAlive,
  startManager,
  startNamedPod,
  statusPortOf,
  tableFor,
} from './support/nginx-manager.js';
import { createNginxWrapper, nginxMasters, type NginxWrapper } from './support/nginx-wrapper.js';

// nginx misbehaving under the manager: masters killed outright, also while they are being
// restarted, and configs nginx refuses. A wrapper binary makes each fault happen exactly
// when the test wants it (see support/nginx-wrapper.ts).

const cleanups = new Cleanups();
afterEach(() => cleanups.run());

async function wrapper(): Promise<NginxWrapper> {
  const w = await createNginxWrapper();
  cleanups.add(() => w.remove());
  return w;
}

/** True while `process` is an nginx worker that still accepts connections. */
async function stillWorking(process: ProcessIdentity): Promise<boolean> {
  return /worker process$/.test((await processTitle(process)) ?? '');
}

async function masterKilledBeforeItsRestartIsConfirmed(t: TestContext): Promise<void> {
  const a = await startNamedPod(cleanups, 'pod-a', '127.0.0.2');
  const b = await startNamedPod(cleanups, 'pod-b', '127.0.0.3');
  const nginxWrapper = await wrapper();
  const { nginx, config, port, prefix } = await startManager(cleanups, {
    nginxBinary: nginxWrapper.path,
    restartBackoffMs: { initialMs: 50, maxMs: 400 },
  });
  await nginx.apply(tableFor(config, [a]));
  const first = nginx.lastOutcome().pid as number;
  const killed: number[] = [first];
  const leftBehind: ProcessIdentity[] = await childrenOf(first);

  // The next two masters start but can never be confirmed: each is killed while the
  // manager still waits for it, with its workers up and holding the ports.
  await nginxWrapper.hideNextStarts(2);
  process.kill(first, 'SIGKILL');
  for (let i = 0; i < 2; i++) {
    const hidden = await eventually(
      async () => {
        for (const pid of await nginxMasters(prefix, '.hidden')) {
          if (killed.includes(pid)) continue;
          const workers = await childrenOf(pid);
          if (workers.length > 0) return { pid, workers };
        }
        return null;
      },
      `hidden master ${i + 1} to start its workers (it cannot while workers of a killed master hold the ports)`,
      15_000,
    );
    leftBehind.push(...hidden.workers);
    killed.push(hidden.pid);
    process.kill(hidden.pid, 'SIGKILL');
  }
  const lastKill = Date.now();

  await eventually(() => nginx.lastOutcome().restarts === 1, 'nginx to be restarted on the last good config', 20_000);
  const recoveredMs = Date.now() - lastKill;
  const outcome = nginx.lastOutcome();
  assert.equal(outcome.unexpectedExits, 1, 'only the confirmed master counts as an unexpected exit');
  assert.ok(outcome.pid !== null && !killed.includes(outcome.pid) && isAlive(outcome.pid));
  // Every worker of a killed master was ended: none serves (or holds a port) any more.
  await eventually(
    async () => (await Promise.all(leftBehind.map(stillWorking))).every((w) => !w),
    'the workers of the killed masters to be ended',
    10_000,
  );
  const answer = await readConfigVersion(statusPortOf(await readFile(nginx.files.conf, 'utf8')));
  assert.equal(await parentOf(answer?.workerPid ?? 0), outcome.pid, 'the status port is answered by the new master');
  assert.deepEqual(await get(port), { status: 200, body: 'pod-a' });

  // New tables are served: no leftover worker answers with an older config.
  await nginx.apply(tableFor(config, [b]));
  for (let i = 0; i < 20; i++) assert.deepEqual(await get(port), { status: 200, body: 'pod-b' });
  t.diagnostic(
    `restarted ${recoveredMs} ms after the last kill; ` +
      `${leftBehind.length} workers of ${killed.length} killed masters ended`,
  );

  // Closing leaves nothing running.
  const live = nginx.lastOutcome().pid as number;
  const liveWorkers = await childrenOf(live);
  await nginx.close();
  for (const p of [live, ...liveWorkers.map((w) => w.pid)])
    assert.equal(isAlive(p), false, `process ${p} still runs after close`);
  await assert.rejects(get(port), /ECONNREFUSED/);
}

async function refusedTableRetriedWithBackoff(t: TestContext): Promise<void> {
  const a = await startNamedPod(cleanups, 'pod-a', '127.0.0.2');
  const b = await startNamedPod(cleanups, 'pod-b', '127.0.0.3');
  const nginxWrapper = await wrapper();
  const retryBackoffMs = { initialMs: 100, maxMs: 400 };
  const { nginx, config, port } = await startManager(cleanups, { nginxBinary: nginxWrapper.path, retryBackoffMs });
  await nginx.apply(tableFor(config, [a]));
  const okSince = nginx.lastOutcome().since as number;

  await nginxWrapper.refuseChecks('nginx: [emerg] the test says no');
  const refusedAt = Date.now();
  await assert.rejects(nginx.apply(tableFor(config, [b])), /CONFIG_REFUSED|nginx refused the config/);
  let outcome = nginx.lastOutcome();
  assert.equal(outcome.ok, false);
  assert.equal(outcome.error?.code, 'KR_NGINX_CONFIG_REFUSED');
  assert.match(outcome.error?.message ?? '', /the test says no/);
  assert.equal(outcome.behind, true);
  assert.equal(outcome.retry?.attempt, 1);
  assert.ok((outcome.retry?.nextAt ?? 0) >= refusedAt + retryBackoffMs.initialMs);
  assert.ok((outcome.since ?? 0) >= refusedAt && (outcome.since ?? 0) > okSince);
  assert.deepEqual(outcome.lastError && { code: outcome.lastError.code }, { code: 'KR_NGINX_CONFIG_REFUSED' });
  assert.deepEqual(await get(port), { status: 200, body: 'pod-a' }, 'the previous config keeps serving');

  // Nobody calls apply again: the timer does, ever less often.
  const checksBefore = (await nginxWrapper.checkTimes()).length;
  const checkTimes = await eventually(
    async () => {
      const times = (await nginxWrapper.checkTimes()).slice(checksBefore);
      return times.length >= 5 && times.slice(0, 5);
    },
    'five more nginx -t runs without a new apply (the refused table tried again on a timer)',
    15_000,
  );
  const gaps = checkTimes.slice(1).map((time, i) => time - (checkTimes[i] as number));
  t.diagnostic(`retries ${checkTimes.length}, gaps between checks ${gaps.join(', ')} ms`);
  // Try n+1 waits 100 x 2^n ms, at most 400 ms (a busy machine only makes gaps longer).
  gaps.forEach((gap, i) => assert.ok(gap >= Math.min(400, 100 * 2 ** (i + 1)) - 20, `gap ${i + 1} is ${gap} ms`));
  // While a try runs, no retry is pending (retry is null): wait for the next one to be scheduled.
  outcome = await eventually(
    () => {
      const now = nginx.lastOutcome();
      return (now.retry?.attempt ?? 0) >= 5 && now;
    },
    'a sixth try to be scheduled (retry.attempt >= 5)',
    5_000,
  );
  assert.equal(outcome.reloads, 0);
  assert.deepEqual(await get(port), { status: 200, body: 'pod-a' });

  // Once nginx takes it, the table is served without anyone asking again.
  await nginxWrapper.allowChecks();
  const allowedAt = Date.now();
  await eventually(() => nginx.lastOutcome().ok === true, 'the retry to succeed', 5_000);
  outcome = nginx.lastOutcome();
  assert.deepEqual(
    { behind: outcome.behind, retry: outcome.retry, error: outcome.error, reloads: outcome.reloads },
    { behind: false, retry: null, error: null, reloads: 1 },
  );
  assert.ok((outcome.since ?? 0) >= allowedAt);
  assert.equal(outcome.lastError?.code, 'KR_NGINX_CONFIG_REFUSED', 'the last error stays for diagnosis');
  assert.ok((outcome.lastLoadedAt ?? 0) >= allowedAt);
  for (let i = 0; i < 5; i++) assert.deepEqual(await get(port), { status: 200, body: 'pod-b' });
}

async function reloadIsTheCheckWithoutNginxT(): Promise<void> {
  const a = await startNamedPod(cleanups, 'pod-a', '127.0.0.2');
  const b = await startNamedPod(cleanups, 'pod-b', '127.0.0.3');
  const nginxWrapper = await wrapper();
  let broken = false;
  const { nginx, config, port } = await startManager(
    cleanups,
    { nginxBinary: nginxWrapper.path, checkBeforeLoad: false, retryBackoffMs: { initialMs: 100, maxMs: 200 } },
    (config) => (table, runtime) => {
      const text = renderNginxConf(table, { ...config, runtime });
      return broken ? text.replace('http {', 'http {\nno_such_directive on;') : text;
    },
  );
  await nginx.apply(tableFor(config, [a]));
  await nginx.apply(tableFor(config, [b]));
  assert.deepEqual(await get(port), { status: 200, body: 'pod-b' });
  assert.equal(await nginxWrapper.checks(), 0, 'no nginx -t ran');
  const liveConf = await readFile(nginx.files.conf, 'utf8');

  broken = true;
  await assert.rejects(nginx.apply(tableFor(config, [a])), (err: unknown) => {
    assert.match(String(err), /RELOAD_FAILED|did not load/);
    assert.match(String(err), /unknown directive "no_such_directive"/);
    return true;
  });
  for (let i = 0; i < 5; i++)
    assert.deepEqual(await get(port), { status: 200, body: 'pod-b' }, 'the previous config keeps serving');
  assert.equal(await readFile(nginx.files.conf, 'utf8'), liveConf, 'the last good config is back on disk');
  const failures = nginx.lastOutcome().failures;
  await eventually(() => nginx.lastOutcome().failures >= failures + 2, 'the table to be tried again', 5_000);

  broken = false;
  await eventually(() => nginx.lastOutcome().ok === true, 'the retry to succeed once the config loads', 5_000);
  assert.deepEqual(await get(port), { status: 200, body: 'pod-a' });
  assert.equal(nginx.lastOutcome().restarts, 0, 'nginx never went down');
}

describe('nginx faults', { timeout: 120_000 }, () => {
  after(() => cleanups.run());

  it(
    'a master killed before its restart is confirmed leaves no worker behind, also when it happens twice in a row',
    masterKilledBeforeItsRestartIsConfirmed,
  );

  it(
    'tries a refused table again on a timer with backoff, the old config serving meanwhile, and says why',
    refusedTableRetriedWithBackoff,
  );

  it(
    'without nginx -t the reload is the check: a config nginx cannot load is never served, the last good ' +
      'file is put back, and the table is retried',
    reloadIsTheCheckWithoutNginxT,
  );

  it('drops the retry of a refused table when a newer table is served', async () => {
    const a = await startNamedPod(cleanups, 'pod-a', '127.0.0.2');
    const b = await startNamedPod(cleanups, 'pod-b', '127.0.0.3');
    let brokenFor: string | null = null;
    const { nginx, config, port } = await startManager(
      cleanups,
      { retryBackoffMs: { initialMs: 100, maxMs: 100 } },
      (config) => (table, runtime) => {
        const text = renderNginxConf(table, { ...config, runtime });
        // nginx itself refuses the config of one particular table.
        return table.routes[0]?.backends[0]?.pod === brokenFor
          ? text.replace('http {', 'http {\nno_such_directive on;')
          : text;
      },
    );
    await nginx.apply(tableFor(config, [a]));
    brokenFor = 'pod-b';
    await assert.rejects(nginx.apply(tableFor(config, [b])), /no_such_directive/);
    assert.equal(nginx.lastOutcome().retry?.attempt, 1);
    await nginx.apply(tableFor(config, [a, b]));
    const outcome = nginx.lastOutcome();
    assert.deepEqual(
      { ok: outcome.ok, behind: outcome.behind, retry: outcome.retry },
      { ok: true, behind: false, retry: null },
    );
    const failures = outcome.failures;
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(nginx.lastOutcome().failures, failures, 'the replaced table is not tried again');
    assert.equal(nginx.lastOutcome().reloads, 1);
    const bodies = new Set<string>();
    for (let i = 0; i < 4; i++) bodies.add((await get(port)).body);
    assert.deepEqual([...bodies].sort(), ['pod-a', 'pod-b']);
  });
});
