import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BackoffTimer, backoffDelay, jitteredBackoffDelay } from '../src/core/backoff.js';

// One backoff for every retry: nginx restarts and retried tables wait exactly the
// doubling delay; the Kubernetes watches and Event writes wait a jittered one.

const policy = { initialMs: 100, maxMs: 1000 };

test('backoff doubles from the initial wait up to the maximum', () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 9, 1000].map((n) => backoffDelay(n, policy)),
    [100, 200, 400, 800, 1000, 1000, 1000],
  );
  assert.equal(backoffDelay(0, policy), 100, 'an attempt before the first waits the initial delay');
});

test('backoff doubles from the initial wait up to the maximum, jittered within the upper half', () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 9].map((n) => jitteredBackoffDelay(n, policy, () => 1)),
    [100, 200, 400, 800, 1000, 1000],
  );
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((n) => jitteredBackoffDelay(n, policy, () => 0)),
    [50, 100, 200, 400, 500],
  );
  for (let n = 1; n < 12; n++) {
    const d = jitteredBackoffDelay(n, policy);
    const ceiling = Math.min(1000, 100 * 2 ** (n - 1));
    assert.ok(d >= ceiling / 2 && d <= ceiling, `attempt ${n}: ${d}`);
  }
});

test('the backoff timer runs a job after each delay in turn, once per schedule, and starts over after reset', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const timer = new BackoffTimer(100, 250);
  const runs: number[] = [];
  const job = (): void => void runs.push(Date.now());
  assert.deepEqual(timer.schedule(job), { attempt: 1, nextAt: 100 });
  assert.deepEqual(timer.schedule(job), { attempt: 1, nextAt: 100 }, 'a try already waiting is not scheduled twice');
  assert.deepEqual(timer.pending(), { attempt: 1, nextAt: 100 });
  t.mock.timers.tick(100);
  assert.deepEqual(runs, [100]);
  assert.equal(timer.pending(), null);
  assert.deepEqual(timer.schedule(job), { attempt: 2, nextAt: 300 });
  t.mock.timers.tick(200);
  assert.deepEqual(timer.schedule(job), { attempt: 3, nextAt: 550 }, 'capped at the maximum');
  t.mock.timers.tick(250);
  assert.deepEqual(runs, [100, 300, 550]);
  timer.reset();
  assert.deepEqual(timer.schedule(job), { attempt: 1, nextAt: 650 });
  timer.cancel();
  assert.equal(timer.pending(), null);
  t.mock.timers.tick(1000);
  assert.deepEqual(runs, [100, 300, 550], 'a cancelled try does not run');
});
