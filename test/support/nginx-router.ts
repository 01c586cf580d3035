import assert from 'node:assert/strict';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { NginxMode } from '../../src/core/config.js';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { delay } from './eventually.js';
import { LoadClient } from './load-client.js';
import { manifestText, podFor } from './manifests.js';
import { createNginxWrapper, endNginxOn, nginxMasters, type NginxWrapper } from './nginx-wrapper.js';
import { startPods, type TestPod } from './pods.js';
import { adminPortOf, startRouterProcess, type RouterProcess } from './router-process.js';
import { workDir } from './work-dir.js';

// `k8s-router run --backend nginx --manifest` for fault tests, in either nginx mode: the
// nginx binary is the test wrapper (support/nginx-wrapper.ts), the manifest routes one host
// to one test pod, and a probe sends requests throughout and says who answered.

export interface Setup {
  mode: NginxMode;
  dir: string;
  prefix: string;
  manifest: string;
  port: number;
  pods: TestPod[];
  wrapper: NginxWrapper;
  /** Every router started on it, ended (with their nginx) when the test ends. */
  routers: RouterProcess[];
  /** Probes still sending: a test that fails before it stops its probe would otherwise never end. */
  probes: Set<{ stop(): Promise<Probe[]> }>;
}

export async function setUp(
  name: string,
  firstIp: number,
  t: TestContext,
  mode: NginxMode = 'documented',
): Promise<Setup> {
  const dir = await workDir(`k8s-router-nginx-faults-${name}-`);
  const pods = await startPods(`${name}`, 2, firstIp);
  const wrapper = await createNginxWrapper();
  const port = await pickFreeLoopbackPort();
  const setup: Setup = {
    mode,
    dir,
    prefix: join(dir, 'nginx'),
    manifest: join(dir, 'cluster.yaml'),
    port,
    pods,
    wrapper,
    routers: [],
    probes: new Set(),
  };
  t.after(async () => {
    await Promise.all([...setup.probes].map((p) => p.stop()));
    for (const router of setup.routers) router.kill('SIGKILL');
    await Promise.all(setup.routers.map((r) => r.exited));
    // A router killed outright leaves its nginx (and a test that failed half-way, perhaps workers).
    await endNginxOn(setup.prefix);
    await Promise.all(pods.map((p) => p.close()));
    await wrapper.remove();
    await rm(dir, { recursive: true, force: true });
  });
  return setup;
}

/** Serves `host` from test pod `i` alone. */
export async function routeTo(setup: Setup, host: string, i: number): Promise<void> {
  const pod = setup.pods[i] as TestPod;
  await writeFile(
    `${setup.manifest}.tmp`,
    manifestText([podFor(pod, { namespace: 'faults', hosts: host, paths: ['/'] })]),
  );
  await rename(`${setup.manifest}.tmp`, setup.manifest);
}

/**
 * Routers of concurrent tests start one at a time: a start is mostly CPU (loading the
 * router's code), and several at once on a busy machine each take longer than a start may.
 */
let starting: Promise<unknown> = Promise.resolve();

export function startRouter(setup: Setup, env: Record<string, string> = {}): Promise<RouterProcess> {
  const started = starting.then(() => startOne(setup, env));
  starting = started.catch(() => undefined);
  return started;
}

function startOne(setup: Setup, env: Record<string, string>): Promise<RouterProcess> {
  return startRouterProcess(['--backend', 'nginx', '--manifest', setup.manifest], {
    PORT: String(setup.port),
    LISTEN_ADDRESS: '127.0.0.1',
    NGINX_PREFIX: setup.prefix,
    NGINX_BINARY: setup.wrapper.path,
    NGINX_MODE: setup.mode,
    HOLD_OFF_MS: '20',
    MAX_DELAY_MS: '100',
    SHUTDOWN_GRACE_MS: '3000',
    ...env,
  }).then((router) => {
    setup.routers.push(router);
    return router;
  });
}

export interface Probe {
  at: number;
  pod: string | null;
}

/** One request on a new connection every ~10 ms until stopped (or the test ends): who answered, when. */
export function probe(setup: Setup, host: string): { stop(): Promise<Probe[]> } {
  let running = true;
  const client = new LoadClient({ port: setup.port, host }, { keepAlive: false, idPrefix: 'probe', timeoutMs: 5_000 });
  const probes: Probe[] = [];
  const loop = (async () => {
    while (running) {
      const { outcome, doneAt } = await client.send();
      probes.push({
        at: doneAt,
        pod: outcome.kind === 'response' && outcome.status === 200 ? (outcome.pod ?? null) : null,
      });
      await delay(10);
    }
  })();
  const handle = {
    async stop() {
      running = false;
      setup.probes.delete(handle);
      await loop;
      return probes;
    },
  };
  setup.probes.add(handle);
  return handle;
}

/** The longest run of failed probes, in ms, and how many failed. */
export function outage(probes: Probe[]): { failed: number; longestMs: number } {
  let longestMs = 0;
  let since: number | null = null;
  for (const p of probes) {
    if (p.pod === null) since ??= p.at;
    else if (since !== null) {
      longestMs = Math.max(longestMs, p.at - since);
      since = null;
    }
  }
  return { failed: probes.filter((p) => p.pod === null).length, longestMs };
}

/** A router on nginx serving `NAME.test` from test pod 0, and its nginx master. */
export async function serving(
  name: string,
  firstIp: number,
  t: TestContext,
  mode: NginxMode = 'documented',
): Promise<{ setup: Setup; host: string; router: RouterProcess; master: number }> {
  const setup = await setUp(name, firstIp, t, mode);
  const host = `${name}.test`;
  await routeTo(setup, host, 0);
  const router = await startRouter(setup);
  const [master] = await nginxMasters(setup.prefix);
  assert.ok(master !== undefined, 'nginx runs');
  return { setup, host, router, master };
}

export const answeredBy = async (port: number, host: string): Promise<string | null> => {
  const { outcome } = await new LoadClient({ port, host }, { keepAlive: false, idPrefix: 'check' }).send();
  return outcome.kind === 'response' && outcome.status === 200 ? (outcome.pod ?? null) : null;
};

/** An answer of the router's admin server. */
export interface AdminAnswer {
  status: number;
  body: string;
}

export async function adminGet(router: RouterProcess, path: string): Promise<AdminAnswer> {
  const res = await fetch(`http://127.0.0.1:${adminPortOf(router)}${path}`);
  return { status: res.status, body: await res.text() };
}

/** The nginx part of /status. */
export async function nginxStatus(router: RouterProcess): Promise<Record<string, unknown>> {
  const status = JSON.parse((await adminGet(router, '/status')).body) as {
    dataPlanes: Array<{ nginx?: Record<string, unknown> }>;
  };
  const nginx = status.dataPlanes[0]?.nginx;
  assert.ok(nginx !== undefined, 'the status has an nginx data plane');
  return nginx;
}

/** The value of an unlabelled metric, or NaN when it is not there. */
export async function metric(router: RouterProcess, name: string): Promise<number> {
  const text = (await adminGet(router, '/metrics')).body;
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? NaN : Number(line.slice(name.length + 1));
}
