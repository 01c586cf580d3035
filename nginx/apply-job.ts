import type { RouteTable } from '../src/core/route-table.js';
import { ControlLostError } from './delivery.js';
import { masterRuns, type Edge } from './edge-state.js';
import { writeFileAtomic } from './files.js';
import { installConfig, NginxApplyError, reloadMaster, type LoadContext } from './load.js';
import { isOpen, type AppliedResult, type ApplyTimings } from './manager-state.js';
import { abandon, launch, loadContext, prepare, retire } from './master-edge.js';
import { renderVersioned, type VersionedConfig } from './versioned-config.js';

// The apply job: gets one table served by nginx. When nginx serves the table's config
// already, the table is only sent (dynamic mode; nothing at all in documented mode);
// otherwise the config is checked and installed, and nginx reloads it (or starts on it),
// then gets the table. A config nginx fails to load is taken off disk again, so the last
// good one keeps serving and is what a restart loads. The job ends with an `applied` or
// `apply-failed` event; the state machine decides what follows (a retry, a restart).

/** What an apply found out on its way, reported when it fails. */
interface Attempt {
  readonly startedAt: number;
  readonly timings: ApplyTimings;
  /** The load may have taken effect after all (a reload that timed out). */
  doubt: boolean;
  /** nginx did load the new config (by a reload) before the table was sent. */
  loaded?: { configVersion: string; pid: number };
}

/** Applies table number `n`; rejects with an NginxApplyError when nginx does not serve it. */
export async function applyJob(edge: Edge, n: number, table: RouteTable): Promise<void> {
  const attempt: Attempt = { startedAt: performance.now(), timings: zeroTimings(), doubt: false };
  if (!isOpen(edge.live.machine))
    throw reportFailure(edge, n, new NginxApplyError('KR_NGINX_CLOSED', 'the nginx data plane is closed'), attempt);
  try {
    const result = await serve(edge, table, attempt);
    edge.notify({ type: 'applied', table: n, result, at: Date.now() });
    logApplied(edge, result);
  } catch (err) {
    throw reportFailure(edge, n, err, attempt);
  }
}

async function serve(edge: Edge, table: RouteTable, attempt: Attempt): Promise<AppliedResult> {
  const { setup, live } = edge;
  const ctx = loadContext(setup, await prepare(edge));
  const { delivery, files } = setup;
  const { workerIdentity, hashes } = live;
  const next = renderVersioned(table, { delivery, files, workerIdentity, statusPort: ctx.statusPort, hashes });
  const { timings, startedAt } = attempt;
  timings.renderMs = performance.now() - startedAt;
  const { machine } = live;
  const configLive = machine.liveConfig === next.version && machine.liveConfirmed && masterRuns(live);
  const sendStart = performance.now();
  const sent = configLive ? await sendOrRetire(edge, table) : null;
  if (sent === null) return loadAndSend(edge, ctx, next, table, attempt);
  timings.sendMs = performance.now() - sendStart;
  timings.totalMs = performance.now() - startedAt;
  return sent === 'unchanged' ? { kind: 'unchanged' } : { kind: 'sent', timings };
}

/**
 * Sends `table` to the running nginx. A master whose control socket was found gone by the
 * last apply too can take no table ever again (it does not bind the socket anew, not even
 * on a reload): it is retired like a leftover (it stops accepting, finishes its requests)
 * and null says a fresh master must be started in its place.
 */
async function sendOrRetire(edge: Edge, table: RouteTable): Promise<'sent' | 'unchanged' | null> {
  const m = edge.live.master!;
  try {
    return await edge.setup.delivery.send(table, { pid: m.pid as number });
  } catch (err) {
    if (!(err instanceof ControlLostError) || !edge.live.machine.controlLost) throw err;
    await retire(edge, m);
    const fields = { pid: m.pid, err: edge.live.secrets.scrub(err.message) };
    edge.setup.logger?.warn(fields, "nginx's control socket is still gone: a fresh nginx replaces it");
    return null;
  }
}

/** Installs the new config, has nginx load it (a reload, or a start when none runs), and sends the table. */
async function loadAndSend(
  edge: Edge,
  ctx: LoadContext,
  next: VersionedConfig,
  table: RouteTable,
  attempt: Attempt,
): Promise<AppliedResult> {
  const { setup, live } = edge;
  const { timings, startedAt } = attempt;
  Object.assign(timings, await installConfig(ctx, next.text, setup.checkBeforeLoad));
  const started = await load(edge, ctx, next, attempt);
  const m = live.master!;
  if (started === null) {
    live.liveText = next.text;
    attempt.loaded = { configVersion: next.version, pid: m.pid as number };
  }
  const t = performance.now();
  try {
    await setup.delivery.send(table, { pid: m.pid as number });
  } catch (err) {
    // A fresh nginx holds no table in dynamic mode: it does not count as up before it takes one.
    if (started !== null) await abandon(edge, m);
    throw err;
  }
  live.liveText = next.text;
  timings.sendMs = performance.now() - t;
  timings.totalMs = performance.now() - startedAt;
  return started === null
    ? { kind: 'reloaded', configVersion: next.version, timings }
    : { kind: 'started', pid: started, configVersion: next.version, timings };
}

/**
 * Has the running master reload the installed config, or starts one on it; returns the
 * pid of a master it started, null after a reload. On failure the last good config is put
 * back on disk.
 */
async function load(edge: Edge, ctx: LoadContext, next: VersionedConfig, attempt: Attempt): Promise<number | null> {
  const { setup, live } = edge;
  try {
    if (masterRuns(live)) {
      Object.assign(attempt.timings, await reloadMaster(ctx, live.master!, next.version));
      return null;
    }
    const t = performance.now();
    const pid = (await launch(edge, ctx, next.version)).pid as number;
    attempt.timings.loadMs = performance.now() - t;
    return pid;
  } catch (err) {
    attempt.doubt = err instanceof NginxApplyError && err.code === 'KR_NGINX_RELOAD_FAILED';
    if (live.liveText !== null) await writeFileAtomic(setup.files.conf, live.liveText);
    throw err;
  }
}

/** Tells the state machine why the apply failed; returns the error the apply rejects with. */
function reportFailure(edge: Edge, n: number, err: unknown, attempt: Attempt): NginxApplyError {
  const { live } = edge;
  const error =
    err instanceof NginxApplyError ? err : new NginxApplyError('KR_NGINX_IO_FAILED', (err as Error).message);
  const failure = { code: error.code, message: live.secrets.scrub(error.message) };
  const controlLost = err instanceof ControlLostError;
  const { doubt, loaded } = attempt;
  const extra = { controlLost, ...(loaded ? { loaded } : {}) };
  edge.notify({
    type: 'apply-failed',
    table: n,
    error: failure,
    doubt,
    running: masterRuns(live),
    ...extra,
    at: Date.now(),
  });
  return error;
}

function logApplied(edge: Edge, result: AppliedResult): void {
  const { setup, live } = edge;
  if (result.kind === 'unchanged') {
    const fields = { version: live.machine.liveConfig };
    setup.logger?.debug(fields, 'nginx serves this table already: nothing to load or send');
    return;
  }
  const { timings } = result;
  const fields = {
    version: live.machine.liveConfig,
    ms: Math.round(timings.totalMs),
    timings: roundTimings(timings),
    reloads: live.machine.reloads,
  };
  if (result.kind === 'sent')
    setup.logger?.info({ ...fields, table: setup.delivery.report().tableVersion }, 'nginx serves the new table');
  else setup.logger?.info(fields, 'nginx serves the new config');
}

function zeroTimings(): ApplyTimings {
  return { renderMs: 0, writeMs: 0, checkMs: 0, loadMs: 0, retireMs: 0, sendMs: 0, totalMs: 0 };
}

function roundTimings(timings: ApplyTimings): Record<keyof ApplyTimings, number> {
  const rounded = { ...timings };
  for (const key of Object.keys(rounded) as Array<keyof ApplyTimings>) rounded[key] = Math.round(rounded[key]);
  return rounded;
}
