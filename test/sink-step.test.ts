import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultConfig } from '../src/core/config.js';
import type { Pod } from '../src/core/kube-objects.js';
import { buildRouteTable } from '../src/core/route-table.js';
import { createEventSink, disabledEventSink } from '../src/events/event-sink.js';
import type { FailureCause, WriteOutcome } from '../src/events/event-writer.js';
import { microTime } from '../src/events/rejection-event.js';
import {
  initialSinkState,
  snapshot,
  type SinkRules,
  type SinkSnapshot,
  type SinkState,
} from '../src/events/sink-state.js';
import { LOG_EPISODE_MS, step, type SinkEffect } from '../src/events/sink-step.js';
import { eventually } from './support/eventually.js';
import { pod } from './support/objects.js';

// The events sink's transitions, one example each: the state machine is driven with
// made-up times, and what it asks for (writes, the timer, log lines) and what it knows
// (each rejection's state, the pauses, the counters) are read after each step.

const config = defaultConfig();
const T0 = Date.UTC(2026, 0, 1);
const SECOND = 1_000;

const uid = (namespace: string, name: string): string => `uid-${namespace}-${name}`;
/** A pod with one bad path entry: one PORT_NOT_DECLARED rejection, due at once. */
const typo = (name: string, namespace = 'shop'): Pod =>
  pod(name, { namespace, hosts: `${namespace}.test`, paths: '80:/ 9:/nope', uid: uid(namespace, name) });
/** A pod that is not ready: a NOT_READY rejection, reported only once it has lasted the state delay. */
const unready = (name: string, namespace = 'shop', ready = false): Pod =>
  pod(name, { namespace, hosts: `${namespace}.test`, paths: '80:/', ready, uid: uid(namespace, name) });

const created: WriteOutcome = { ok: true, created: true };
const failure = (cause: FailureCause): WriteOutcome => ({ ok: false, cause, message: `the API server said ${cause}` });

/** A sink state machine and the effects of its last step, with the rules of a test. */
class Machine {
  readonly state: SinkState;
  effects: SinkEffect[] = [];

  constructor(rules: Partial<SinkRules> = {}) {
    this.state = initialSinkState(
      {
        reportingInstance: 'router-0',
        stateDelayMs: 60 * SECOND,
        maxQueued: 100,
        maxInFlight: 4,
        qps: 1000,
        burst: 1000,
        // Deterministic: 1 s, 2 s, 4 s...
        retryDelayMs: (attempts) => SECOND * 2 ** (attempts - 1),
        ...rules,
      },
      T0,
    );
  }

  table(now: number, pods: Pod[]): this {
    this.effects = step(this.state, { type: 'table', now, table: buildRouteTable(config, pods, []), pods });
    return this;
  }

  tick(now: number): this {
    this.effects = step(this.state, { type: 'tick', now });
    return this;
  }

  /** The write of the Event on `podName` ended with `outcome`. */
  written(now: number, podName: string, outcome: WriteOutcome): this {
    const name = this.snapshot().rejections.find((r) => r.pod === podName)?.name;
    assert.ok(name !== undefined, `no rejection of ${podName} is tracked`);
    this.effects = step(this.state, { type: 'written', now, name, outcome });
    return this;
  }

  stop(): this {
    this.effects = step(this.state, { type: 'stop' });
    return this;
  }

  snapshot(): SinkSnapshot {
    return snapshot(this.state);
  }

  /** Each tracked rejection's pod and state, as `pod state`. */
  states(): string[] {
    return this.snapshot().rejections.map((r) => `${r.pod} ${r.state}${r.resolved ? ' (resolved)' : ''}`);
  }

  /** The pods whose Events the last step started writing. */
  writes(): string[] {
    return this.effects.flatMap((e) => (e.type === 'write' ? [e.event.regarding.name] : []));
  }

  /** When the last step asked to be woken. */
  wakeAt(): number | undefined {
    return this.effects.flatMap((e) => (e.type === 'wakeAt' ? [e.at] : [])).at(-1);
  }

  warnings(): Array<Record<string, unknown>> {
    return this.effects.flatMap((e) => (e.type === 'warn' ? [e.fields] : []));
  }
}

describe('events sink transitions: delays and rate', () => {
  it('a rejection is due at once: its write starts in the step that saw it, and is not repeated once reported', () => {
    const m = new Machine().table(T0, [typo('web')]);
    assert.deepEqual(m.writes(), ['web']);
    assert.deepEqual(m.states(), ['web writing']);
    assert.equal(m.wakeAt(), Infinity, 'nothing waits: no timer');

    m.written(T0 + 50, 'web', created);
    assert.deepEqual(m.states(), ['web reported']);
    assert.equal(m.snapshot().written, 1);
    m.table(T0 + 100, [typo('web')]);
    assert.deepEqual(m.writes(), [], 'the same rejection in the next table is not written again');
  });

  it('a pod state waits out its delay, then is written with the time it was first seen', () => {
    const m = new Machine().table(T0, [unready('slow')]);
    assert.deepEqual(m.writes(), []);
    assert.deepEqual(
      m.snapshot().rejections.map((r) => [r.state, r.until]),
      [['delayed', T0 + 60 * SECOND]],
    );
    assert.equal(m.wakeAt(), T0 + 60 * SECOND, 'the timer is set for the end of the delay');

    m.tick(T0 + 60 * SECOND);
    assert.deepEqual(m.writes(), ['slow']);
    const write = m.effects.find((e) => e.type === 'write');
    assert.equal(write?.type === 'write' && write.event.eventTime, microTime(T0));
  });

  it('a rejection that resolves before its delay is forgotten, and not counted as dropped', () => {
    const m = new Machine().table(T0, [unready('quick')]);
    m.table(T0 + 5 * SECOND, [unready('quick', 'shop', true)]);
    assert.deepEqual(m.states(), []);
    assert.equal(m.snapshot().dropped, 0, 'a start-up, not a lost Event');
    assert.equal(m.wakeAt(), Infinity);
  });

  it('a rejection that resolves while due is dropped, and counted', () => {
    // One token, the next in 1,000 s: the second rejection stays due.
    const m = new Machine({ qps: 0.001, burst: 1 }).table(T0, [typo('a'), typo('b')]);
    assert.deepEqual(m.states(), ['a writing', 'b due']);
    assert.equal(m.wakeAt(), T0 + 1_000 * SECOND, 'woken when the next token is there');

    m.table(T0 + SECOND, []);
    assert.deepEqual(m.states(), ['a writing (resolved)'], 'the write in flight is not called back');
    assert.equal(m.snapshot().dropped, 1);
    m.written(T0 + 2 * SECOND, 'a', created);
    assert.deepEqual(m.states(), [], 'written, and forgotten: it is over');
    assert.deepEqual([m.snapshot().written, m.snapshot().dropped], [1, 1]);
  });

  it('writes go out at the token rate: after the burst, the step asks to be woken for the next token', () => {
    const m = new Machine({ qps: 2, burst: 1 }).table(T0, [typo('a'), typo('b'), typo('c')]);
    assert.deepEqual(m.writes(), ['a']);
    assert.equal(m.wakeAt(), T0 + 500);
    assert.deepEqual(m.tick(T0 + 500).writes(), ['b']);
    assert.deepEqual(m.tick(T0 + 1_000).writes(), ['c']);
  });
});

describe('events sink transitions: a 403', () => {
  it('a 403 pauses one namespace: the refused write backs off, the next one there waits, others go on', () => {
    const m = new Machine({ maxInFlight: 1 }).table(T0, [typo('a', 'locked'), typo('b', 'locked'), typo('c', 'open')]);
    assert.deepEqual(m.writes(), ['a']);

    m.written(T0 + 10, 'a', failure('forbidden'));
    assert.deepEqual(m.states(), ['a backingOff', 'b paused', 'c writing']);
    const locked = { until: T0 + 10 + SECOND, attempts: 1, cause: 'forbidden' };
    assert.deepEqual(m.snapshot().namespacePauses, { locked });
    assert.equal(m.snapshot().pauseAll, null, 'other namespaces are not paused');
    assert.deepEqual(m.warnings(), [
      {
        cause: 'forbidden',
        namespace: 'locked',
        pod: 'a',
        code: 'PORT_NOT_DECLARED',
        err: 'the API server said forbidden',
        retryInMs: SECOND,
      },
    ]);

    m.written(T0 + 20, 'c', created);
    assert.deepEqual(m.snapshot().namespacePauses, { locked }, 'a success elsewhere does not lift it');
    assert.equal(m.wakeAt(), T0 + 10 + SECOND);

    assert.deepEqual(m.tick(T0 + 10 + SECOND).writes(), ['a'], 'retried once the pause is over');
    m.written(T0 + 1_100, 'a', created);
    assert.deepEqual(m.snapshot().namespacePauses, {}, 'a success in the namespace lifts its pause');
    assert.deepEqual(m.writes(), ['b']);
  });

  it('a rejection waiting behind its namespace pause that resolves is dropped, and counted', () => {
    const m = new Machine({ maxInFlight: 1 }).table(T0, [typo('a', 'locked'), typo('b', 'locked')]);
    m.written(T0 + 10, 'a', failure('forbidden'));
    assert.deepEqual(m.states(), ['a backingOff', 'b paused']);
    m.table(T0 + 20, [typo('a', 'locked')]);
    assert.deepEqual(m.states(), ['a backingOff']);
    assert.equal(m.snapshot().dropped, 1, 'it was due: its Event is lost');
  });
});

describe('events sink transitions: 429, 422 and logged failures', () => {
  it('a 429 pauses every write, longer after each failure in a row, and a success ends the pause', () => {
    const m = new Machine({ maxInFlight: 1 }).table(T0, [typo('x', 'one'), typo('y', 'two')]);
    m.written(T0, 'x', failure('throttled'));
    assert.deepEqual(m.writes(), [], 'no write in any namespace');
    assert.deepEqual(m.states(), ['x backingOff', 'y due']);
    assert.deepEqual(m.snapshot().pauseAll, { until: T0 + SECOND, attempts: 1, cause: 'throttled' });
    assert.equal(m.wakeAt(), T0 + SECOND);

    assert.deepEqual(m.tick(T0 + SECOND).writes(), ['y'], 'after the pause, in the order they became due');
    m.written(T0 + SECOND, 'y', failure('throttled'));
    const twiceAsLong = { until: T0 + 3 * SECOND, attempts: 2, cause: 'throttled' };
    assert.deepEqual(m.snapshot().pauseAll, twiceAsLong, 'the second failure in a row waits twice as long');
    assert.deepEqual(m.warnings(), [], 'the same episode is not logged again');
    assert.deepEqual(m.snapshot().failed.throttled, 2);

    assert.deepEqual(m.tick(T0 + 3 * SECOND).writes(), ['x']);
    m.written(T0 + 3 * SECOND, 'x', created);
    assert.equal(m.snapshot().pauseAll, null);
    assert.deepEqual(m.writes(), ['y']);
  });

  it('an Event the API server refuses for good (422, 404) is not retried: it counts as reported', () => {
    for (const cause of ['invalid', 'namespace_gone'] as const) {
      const m = new Machine().table(T0, [typo('odd')]);
      m.written(T0 + 10, 'odd', failure(cause));
      assert.deepEqual(m.states(), ['odd reported'], cause);
      assert.deepEqual([m.snapshot().pauseAll, m.snapshot().namespacePauses], [null, {}], `${cause}: nothing paused`);
      assert.deepEqual(
        m.warnings().map((w) => [w.cause, 'retryInMs' in w]),
        [[cause, false]],
      );
      assert.equal(m.snapshot().failed[cause], 1);
    }
  });

  it('each failure cause is logged once, then again only after ten minutes without it', () => {
    const m = new Machine({ maxInFlight: 1 });
    const failAt = (now: number): number => m.written(now, 'web', failure('server_error')).warnings().length;
    m.table(T0, [typo('web')]);
    assert.equal(failAt(T0), 1);
    m.tick(T0 + 5 * 60 * SECOND);
    assert.equal(failAt(T0 + 5 * 60 * SECOND), 0, 'five minutes later: the same episode');
    m.tick(T0 + 5 * 60 * SECOND + LOG_EPISODE_MS);
    assert.equal(failAt(T0 + 5 * 60 * SECOND + LOG_EPISODE_MS), 1, 'ten quiet minutes later: a new episode');
  });
});

describe('events sink transitions: a full queue', () => {
  it('a full queue leaves rejections waiting for room, queued in order as writes leave it', () => {
    const m = new Machine({ maxQueued: 2, maxInFlight: 1 }).table(T0, [typo('a'), typo('b'), typo('c'), typo('d')]);
    assert.deepEqual(m.states(), ['a writing', 'b due', 'c due', 'd waitingForRoom']);
    assert.deepEqual([m.snapshot().queued, m.snapshot().overflow, m.snapshot().inFlight], [2, 1, 1]);

    m.written(T0 + 10, 'a', created);
    assert.deepEqual(m.states(), ['a reported', 'b writing', 'c due', 'd due']);
    assert.equal(m.snapshot().overflow, 0);
  });

  it('a write that fails while the queue is full waits for room, not in the queue', () => {
    const m = new Machine({ maxQueued: 1, maxInFlight: 1 }).table(T0, [typo('a'), typo('b')]);
    assert.deepEqual(m.states(), ['a writing', 'b due']);
    m.written(T0 + 10, 'a', failure('server_error'));
    assert.deepEqual(m.states(), ['a waitingForRoom', 'b due']);
    assert.deepEqual([m.snapshot().queued, m.snapshot().overflow], [1, 1]);
  });

  it('a rejection waiting for room that resolves is dropped and counted, unless a pod state within its delay', () => {
    const m = new Machine({ maxQueued: 1, maxInFlight: 1, qps: 0.001, burst: 1 });
    m.table(T0, [typo('a'), typo('b'), typo('c'), unready('d')]);
    assert.deepEqual(m.states(), ['a writing', 'b due', 'c waitingForRoom', 'd waitingForRoom']);
    m.table(T0 + 10, [typo('a'), typo('b')]);
    assert.deepEqual(m.states(), ['a writing', 'b due']);
    assert.equal(m.snapshot().dropped, 1, 'c was due for an Event; d was still within its delay');
  });
});

describe('events sink transitions: writes in flight and stop', () => {
  it('a rejection that resolves during its write: a success forgets it, a failure to retry counts it dropped', () => {
    const m = new Machine().table(T0, [typo('a'), typo('b')]);
    m.table(T0 + 10, []);
    assert.deepEqual(m.states(), ['a writing (resolved)', 'b writing (resolved)']);
    m.written(T0 + 20, 'a', created);
    m.written(T0 + 30, 'b', failure('server_error'));
    assert.deepEqual(m.states(), []);
    assert.deepEqual([m.snapshot().written, m.snapshot().dropped], [1, 1]);
  });

  it('a rejection that comes back while its write is in flight is reported by that write', () => {
    const m = new Machine().table(T0, [typo('web')]);
    m.table(T0 + 10, []).table(T0 + 20, [typo('web')]);
    assert.deepEqual(m.states(), ['web writing']);
    assert.deepEqual(m.writes(), [], 'no second write');
    m.written(T0 + 30, 'web', created);
    assert.deepEqual(m.states(), ['web reported']);
  });

  it('a rejection that went away and came back once reported is written again', () => {
    const m = new Machine().table(T0, [typo('web')]).written(T0 + 10, 'web', created);
    m.table(T0 + 20, []);
    assert.deepEqual(m.states(), [], 'forgotten: what is remembered is bounded by the current rejections');
    assert.deepEqual(m.table(T0 + 30, [typo('web')]).writes(), ['web']);
  });

  it('stop aborts the writes in flight and cancels the timer; nothing happens after', () => {
    const m = new Machine({ qps: 0.001, burst: 1 }).table(T0, [typo('a'), typo('b')]);
    assert.deepEqual(m.stop().effects, [{ type: 'abortWrites' }, { type: 'wakeAt', at: Infinity }]);
    assert.deepEqual(m.table(T0 + 10, [typo('c')]).effects, [], 'a table after stop is ignored');
    assert.deepEqual(m.tick(T0 + 2_000 * SECOND).effects, []);
    m.written(T0 + 20, 'a', failure('timeout'));
    assert.deepEqual(m.effects, [], 'the aborted write is not retried');
    assert.deepEqual([m.snapshot().inFlight, m.snapshot().failed.timeout, m.snapshot().stopped], [0, 0, true]);
  });
});

describe('the events sink snapshot', () => {
  it('shows a live sink holding a pod state until its delay, then reporting it', async () => {
    const writes: string[] = [];
    const sink = createEventSink({
      write: async (event) => {
        writes.push(event.regarding.name);
        return created;
      },
      reportingInstance: 'router-0',
      qps: 1000,
      burst: 1000,
      stateDelayMs: 300,
    });
    try {
      const pods = [unready('slow')];
      sink.listener({ version: 1, table: buildRouteTable(config, pods, []), builtAt: Date.now(), buildMs: 0, pods });
      const delayed = await eventually(() => sink.snapshot().rejections[0], 'the rejection tracked');
      assert.equal(delayed.state, 'delayed');
      assert.deepEqual(writes, []);
      await eventually(() => sink.snapshot().rejections[0]?.state === 'reported', 'reported after the delay');
      assert.deepEqual(writes, ['slow']);
    } finally {
      await sink.stop();
    }
  });

  it('is empty for a sink that is off', () => {
    const snap = disabledEventSink('EVENTS=false').snapshot();
    assert.deepEqual([snap.rejections, snap.queued, snap.pauseAll], [[], 0, null]);
  });
});
