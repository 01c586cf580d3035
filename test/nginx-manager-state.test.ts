import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  initialState,
  transition,
  type ApplyTimings,
  type Effect,
  type ManagerEvent,
  type ManagerSettings,
  type ManagerState,
} from '../nginx/manager-state.js';

// The nginx manager's transitions, without an nginx: each case is an example of what the
// manager does after an event, read from its state and the effects it asks the edge for.

const settings: ManagerSettings = {
  retry: { initialMs: 1_000, maxMs: 30_000 },
  restart: { initialMs: 100, maxMs: 5_000 },
  restartStableMs: 10_000,
};
const timings: ApplyTimings = { renderMs: 1, writeMs: 1, checkMs: 1, loadMs: 1, retireMs: 0, sendMs: 0, totalMs: 4 };

function run(events: ManagerEvent[], from: ManagerState = initialState()): { state: ManagerState; effects: Effect[] } {
  let state = from;
  let effects: Effect[] = [];
  for (const event of events) ({ state, effects } = transition(state, event, settings));
  return { state, effects };
}

const kinds = (effects: Effect[]): string[] =>
  effects.map((e) => (e.type === 'set-timer' || e.type === 'cancel-timer' ? `${e.type}:${e.timer}` : e.type));
const started = (table: number, at = 1_000): ManagerEvent => ({
  type: 'applied',
  table,
  result: { kind: 'started', pid: 42, configVersion: 'v1', timings },
  at,
});
const refused = (table: number, at: number, running = true): ManagerEvent => ({
  type: 'apply-failed',
  table,
  error: { code: 'KR_NGINX_CONFIG_REFUSED', message: 'nginx refused the config' },
  doubt: false,
  running,
  at,
});

describe('nginx manager state: applies and retries', () => {
  it('starts idle; a table asks the edge to run an apply job', () => {
    const { state, effects } = run([{ type: 'apply', table: 1 }]);
    assert.equal(state.phase, 'idle');
    assert.equal(state.desired, 1);
    assert.deepEqual(effects, [{ type: 'run-apply', table: 1 }]);
  });

  it('serves once the first apply started nginx; the table is no longer behind', () => {
    const { state } = run([{ type: 'apply', table: 1 }, { type: 'job-started', job: 'apply' }, started(1)]);
    assert.equal(state.phase, 'serving');
    assert.equal(state.job, null);
    assert.equal(state.served, 1);
    assert.equal(state.pid, 42);
    assert.equal(state.liveConfig, 'v1');
    assert.equal(state.ok, true);
    assert.equal(state.since, 1_000);
  });

  it('a refused table is tried again after a backoff that doubles, and a newer table replaces it', () => {
    const first = run([{ type: 'apply', table: 1 }, started(1), { type: 'apply', table: 2 }, refused(2, 2_000)]);
    assert.equal(first.state.ok, false);
    assert.equal(first.state.failures, 1);
    assert.deepEqual(first.state.retry, { attempt: 1, nextAt: 3_000 });
    assert.deepEqual(kinds(first.effects), ['log', 'set-timer:retry', 'log']);

    const second = run([{ type: 'retry-due', at: 3_000 }, refused(2, 3_000)], first.state);
    assert.deepEqual(second.state.retry, { attempt: 2, nextAt: 5_000 });

    const replaced = run([{ type: 'apply', table: 3 }], second.state);
    assert.equal(replaced.state.retry, null);
    assert.deepEqual(kinds(replaced.effects), ['cancel-timer:retry', 'run-apply']);
  });

  it('an older table failing after a newer one was given schedules no retry for it', () => {
    const { state, effects } = run([
      { type: 'apply', table: 1 },
      started(1),
      { type: 'apply', table: 2 },
      { type: 'apply', table: 3 },
      refused(2, 2_000),
    ]);
    assert.equal(state.retry, null);
    assert.deepEqual(kinds(effects), ['log']);
  });

  it('once the desired table serves, the retry backoff starts over', () => {
    const failing = run([
      { type: 'apply', table: 1 },
      started(1),
      { type: 'apply', table: 2 },
      refused(2, 2_000),
      { type: 'retry-due', at: 3_000 },
    ]);
    const { state } = run(
      [{ type: 'applied', table: 2, result: { kind: 'reloaded', configVersion: 'v2', timings }, at: 3_100 }],
      failing.state,
    );
    assert.equal(state.ok, true);
    assert.equal(state.retryAttempts, 0);
    assert.equal(state.reloads, 1);
    assert.equal(state.served, 2);
  });
});

describe('nginx manager state: exits and restarts', () => {
  it('an nginx that exits by itself is down and restarted after 100 ms, then 200 ms while restarts fail', () => {
    const serving = run([{ type: 'apply', table: 1 }, started(1)]).state;
    const down = run([{ type: 'exited', pid: 42, ranMs: 500, at: 5_000 }], serving);
    assert.equal(down.state.phase, 'down');
    assert.equal(down.state.pid, null);
    assert.equal(down.state.unexpectedExits, 1);
    assert.deepEqual(down.state.restart, { attempt: 1, nextAt: 5_100 });
    const retried = run(
      [
        { type: 'restart-due', at: 5_100 },
        { type: 'restart-failed', at: 5_150 },
      ],
      down.state,
    );
    assert.deepEqual(retried.state.restart, { attempt: 2, nextAt: 5_350 });
    const up = run(
      [
        { type: 'restart-due', at: 5_350 },
        { type: 'restarted', pid: 43, at: 5_400 },
      ],
      retried.state,
    );
    assert.equal(up.state.phase, 'serving');
    assert.equal(up.state.pid, 43);
    assert.equal(up.state.restarts, 1);
  });

  it('an nginx that ran longer than the stable time is restarted after the shortest delay again', () => {
    let state = run([{ type: 'apply', table: 1 }, started(1)]).state;
    state = { ...state, restartAttempts: 5 };
    const { state: down } = run([{ type: 'exited', pid: 42, ranMs: 60_000, at: 100_000 }], state);
    assert.deepEqual(down.restart, { attempt: 1, nextAt: 100_100 });
  });

  it('a failed load that leaves nginx not running takes it down and schedules both a restart and a retry', () => {
    const { state, effects } = run([
      { type: 'apply', table: 1 },
      started(1),
      { type: 'apply', table: 2 },
      refused(2, 2_000, false),
    ]);
    assert.equal(state.phase, 'down');
    assert.notEqual(state.restart, null);
    assert.notEqual(state.retry, null);
    assert.deepEqual(kinds(effects), ['log', 'set-timer:restart', 'log', 'set-timer:retry', 'log']);
  });
});

function controlLostUntilAFreshMasterServes(): void {
  const lost = (table: number, at: number): ManagerEvent => ({
    type: 'apply-failed',
    table,
    error: { code: 'KR_NGINX_IO_FAILED', message: "nginx's control socket cannot be reached" },
    doubt: false,
    running: true,
    controlLost: true,
    at,
  });
  const serving = run([{ type: 'apply', table: 1 }, started(1)]).state;
  const first = run([{ type: 'apply', table: 2 }, lost(2, 2_000)], serving);
  assert.equal(first.state.controlLost, true, 'the edge reads this on the retry: found gone twice, nginx is replaced');
  assert.equal(first.state.phase, 'serving', 'the old master still serves the old table meanwhile');
  assert.equal(first.state.pid, 42);
  assert.deepEqual(first.state.retry, { attempt: 1, nextAt: 3_000 });

  const due = run(
    [
      { type: 'retry-due', at: 3_000 },
      { type: 'job-started', job: 'apply' },
    ],
    first.state,
  );
  assert.equal(due.state.controlLost, true, 'still known when the retry runs');
  const replaced = run(
    [{ type: 'applied', table: 2, result: { kind: 'started', pid: 43, configVersion: 'v1', timings }, at: 3_100 }],
    due.state,
  );
  assert.equal(replaced.state.controlLost, false);
  assert.equal(replaced.state.pid, 43);
  assert.equal(replaced.state.served, 2);
  assert.equal(replaced.state.retry, null);

  assert.equal(run([refused(2, 3_100)], due.state).state.controlLost, false, 'a refusal is not a lost socket');
  assert.equal(
    run([{ type: 'exited', pid: 42, ranMs: 1, at: 3_100 }], first.state).state.controlLost,
    false,
    'a restart binds it anew',
  );
}

describe('nginx manager state: reloads, close and counts', () => {
  it('a reload that failed in doubt makes the next apply load the config even if unchanged', () => {
    const doubt: ManagerEvent = {
      ...(refused(2, 2_000) as Extract<ManagerEvent, { type: 'apply-failed' }>),
      doubt: true,
    };
    const { state } = run([{ type: 'apply', table: 1 }, started(1), { type: 'apply', table: 2 }, doubt]);
    assert.equal(state.liveConfirmed, false);
  });

  it('a table nginx did not take after loading a new config for it still records the config as live', () => {
    const failed: ManagerEvent = {
      type: 'apply-failed',
      table: 1,
      error: { code: 'KR_NGINX_TABLE_NOT_SERVED', message: 'not every worker serves it' },
      doubt: false,
      running: true,
      loaded: { configVersion: 'v1', pid: 42 },
      at: 1_000,
    };
    const { state } = run([{ type: 'apply', table: 1 }, failed]);
    assert.equal(state.phase, 'serving');
    assert.equal(state.liveConfig, 'v1');
    assert.equal(state.pid, 42);
    assert.equal(state.ok, false);
    assert.notEqual(state.retry, null);
  });

  it(
    "a control socket found gone is remembered until the retry's fresh master serves; " + 'other outcomes forget it',
    controlLostUntilAFreshMasterServes,
  );

  it('close cancels the timers and stops nginx; nothing is scheduled after', () => {
    const down = run([{ type: 'apply', table: 1 }, started(1), { type: 'exited', pid: 42, ranMs: 1, at: 2_000 }]).state;
    const closing = run([{ type: 'close' }], down);
    assert.equal(closing.state.phase, 'closing');
    assert.deepEqual(kinds(closing.effects), ['cancel-timer:retry', 'cancel-timer:restart', 'run-stop']);
    const after = run([{ type: 'restart-due', at: 3_000 }, refused(1, 3_000), { type: 'stopped' }], closing.state);
    assert.equal(after.state.phase, 'closed');
    assert.equal(after.state.restart, null);
    assert.equal(after.state.retry, null);
  });

  it('the same number of unchanged applies is counted', () => {
    const { state } = run([
      { type: 'apply', table: 1 },
      started(1),
      { type: 'apply', table: 2 },
      { type: 'applied', table: 2, result: { kind: 'unchanged' }, at: 2_000 },
    ]);
    assert.equal(state.unchanged, 1);
    assert.equal(state.served, 2);
  });
});
