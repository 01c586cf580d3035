import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { Writable } from 'node:stream';
import { afterEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { defaultConfig } from '../src/core/config.js';
import { createController, type TableUpdate } from '../src/control/controller.js';
import type { DataPlane } from '../src/core/data-plane.js';
import type { Pod } from '../src/core/kube-objects.js';
import { buildRouteTable, type RouteTable } from '../src/core/route-table.js';
import { createEventSink, type EventSink, type EventSinkOptions } from '../src/events/event-sink.js';
import type { FailureCause, WriteOutcome } from '../src/events/event-writer.js';
import { eventSinkFor, reportingInstance } from '../src/events/events-for-router.js';
import type { RouteRejectedEvent } from '../src/events/rejection-event.js';
import type { ObjectSource } from '../src/sources/source.js';
import { delay, eventually } from './support/eventually.js';
import { FakeApiServer } from './support/fake-api-server.js';
import { pod } from './support/objects.js';

// The sink against an in-memory events API whose answers the test decides: what it
// writes, when, how often, and what it does when the API refuses, fails or hangs.

const config = defaultConfig();
let version = 0;

/** A table update for these pods, as the controller publishes it. */
function updateFor(pods: Pod[]): TableUpdate {
  return { version: ++version, table: buildRouteTable(config, pods, []), builtAt: Date.now(), buildMs: 0, pods };
}

/** A pod from the API server: it has a uid. */
const apiPod = (name: string, spec: Parameters<typeof pod>[1] = {}): Pod =>
  pod(name, { ...spec, uid: `uid-${spec.namespace ?? 'default'}-${name}` });

/** A pod with one bad path entry: one PORT_NOT_DECLARED rejection (a host per namespace, so no claims). */
const typo = (name: string, namespace = 'shop'): Pod =>
  apiPod(name, { namespace, hosts: `${namespace}.test`, paths: '80:/ 9:/nope' });

type Answer = WriteOutcome | 'hang';

class FakeEventsApi {
  readonly calls: Array<{ event: RouteRejectedEvent; at: number }> = [];
  readonly stored = new Map<string, RouteRejectedEvent>();
  /** Decides the answer to each write; by default the API server's: 201, or 409 for a name it has. */
  answer: (event: RouteRejectedEvent) => Answer = (event) => {
    const key = `${event.metadata.namespace}/${event.metadata.name}`;
    if (this.stored.has(key)) return { ok: true, created: false };
    this.stored.set(key, event);
    return { ok: true, created: true };
  };

  readonly write = (event: RouteRejectedEvent, signal: AbortSignal): Promise<WriteOutcome> => {
    this.calls.push({ event, at: Date.now() });
    const answer = this.answer(event);
    if (answer !== 'hang') return Promise.resolve(answer);
    return new Promise((resolve) =>
      signal.addEventListener('abort', () => resolve({ ok: false, cause: 'timeout', message: 'aborted' })),
    );
  };

  callsFor(namespace: string): number {
    return this.calls.filter((c) => c.event.metadata.namespace === namespace).length;
  }
}

const failure = (cause: FailureCause, status?: number): WriteOutcome => ({
  ok: false,
  cause,
  ...(status ? { status } : {}),
  message: `${status ?? ''} ${cause}`,
});

const sinks: EventSink[] = [];
function startSink(api: FakeEventsApi, options: Partial<EventSinkOptions> = {}): EventSink {
  const sink = createEventSink({
    write: api.write,
    reportingInstance: 'router-0',
    qps: 1000,
    burst: 1000,
    stateDelayMs: 0,
    ...options,
  });
  sinks.push(sink);
  return sink;
}

function captureLogs(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

afterEach(async () => {
  await Promise.all(sinks.splice(0).map((s) => s.stop()));
});

describe('events sink: queueing and rate', () => {
  it('queues the work: the listener returns before any write starts', async () => {
    const api = new FakeEventsApi();
    const sink = startSink(api);
    sink.listener(updateFor([typo('web-0')]));
    assert.equal(api.calls.length, 0, 'nothing written inside the listener');
    await sink.idle();
    assert.equal(api.calls.length, 1);
    assert.equal(api.calls[0]?.event.note, 'PORT_NOT_DECLARED: 9:/nope: port 9 is not a containerPort of the pod');
  });

  it('writes one Event per rejection however many tables repeat it', async () => {
    const api = new FakeEventsApi();
    const sink = startSink(api);
    const pods = [typo('a'), typo('b'), apiPod('fine', { hosts: 'h.test', paths: '80:/fine' })];
    for (let i = 0; i < 50; i++) {
      sink.listener(updateFor(pods));
      if (i % 10 === 0) await sink.idle();
    }
    await sink.idle();
    assert.deepEqual(api.calls.map((c) => c.event.regarding.name).sort(), ['a', 'b']);
    assert.equal(sink.stats().written, 2);
  });

  it('reports a rejection again once it went away and came back', async () => {
    const api = new FakeEventsApi();
    const sink = startSink(api);
    sink.listener(updateFor([typo('web')]));
    await sink.idle();
    sink.listener(updateFor([apiPod('web', { namespace: 'shop', hosts: 'h.test', paths: '80:/' })]));
    await sink.idle();
    sink.listener(updateFor([typo('web')]));
    await sink.idle();
    assert.equal(api.calls.length, 2, 'written, then tried again after it came back');
    assert.deepEqual(
      sink.stats(),
      { ...sink.stats(), written: 1, alreadyReported: 1 },
      'the API server still had the first Event: 409',
    );
  });

  it('forgets a rejection that resolved before it was written, and counts it as dropped', async () => {
    const api = new FakeEventsApi();
    // One write at once, the next only 20 s later: the others wait their turn.
    const sink = startSink(api, { qps: 0.05, burst: 1 });
    sink.listener(updateFor([typo('a'), typo('b'), typo('c'), typo('d')]));
    await eventually(() => api.calls.length === 1, 'the first write');
    sink.listener(updateFor([]));
    await delay(1_500);
    assert.equal(api.calls.length, 1, 'the resolved ones are not written');
    assert.equal(sink.stats().dropped, 3);
    assert.equal(sink.stats().queued, 0);
  });

  it('spreads a burst of 1,000 rejections over time at EVENTS_QPS after EVENTS_BURST', async () => {
    const api = new FakeEventsApi();
    const qps = 50;
    const burst = 10;
    const sink = startSink(api, { qps, burst });
    const started = Date.now();
    sink.listener(updateFor(Array.from({ length: 1_000 }, (_, i) => typo(`web-${i}`))));
    await delay(2_000);
    const elapsed = Date.now() - started;
    // The bucket holds `burst` tokens and earns `qps` a second: never more than that.
    assert.ok(
      api.calls.length <= burst + Math.ceil((qps * elapsed) / 1000),
      `${api.calls.length} writes in ${elapsed} ms`,
    );
    assert.ok(api.calls.length >= burst, `${api.calls.length} writes in ${elapsed} ms: the burst went out`);
    assert.equal(sink.stats().queued + sink.stats().inFlight + api.calls.length, 1_000, 'the rest waits its turn');
  });
});

describe('events sink: limits and delays', () => {
  it('keeps at most maxQueued writes waiting, and takes the others once the queue drains', async () => {
    const api = new FakeEventsApi();
    let hold = true;
    const defaultAnswer = api.answer;
    api.answer = (event) => (hold ? 'hang' : defaultAnswer(event));
    const sink = startSink(api, { maxQueued: 10, maxInFlight: 2 });
    sink.listener(updateFor(Array.from({ length: 50 }, (_, i) => typo(`web-${i}`))));
    await eventually(() => api.calls.length === 2, 'two writes in flight');
    const { queued, overflow, inFlight } = sink.stats();
    assert.ok(queued <= 10, `queued ${queued}`);
    assert.deepEqual(
      [queued + overflow + inFlight, inFlight],
      [50, 2],
      'every rejection is queued, in flight, or waits for room',
    );
    await sink.stop();
    // A new sink over an API that answers: every rejection gets its Event.
    hold = false;
    const next = startSink(api, { maxQueued: 10, maxInFlight: 2 });
    next.listener(updateFor(Array.from({ length: 50 }, (_, i) => typo(`web-${i}`))));
    await eventually(() => next.stats().written === 50, 'all 50 written through a queue of 10');
    assert.equal(next.stats().overflow, 0);
  });

  it(
    'waits EVENTS_STATE_DELAY_MS before reporting a pod that is ' + 'not ready, and never reports one that got ready',
    async () => {
      const api = new FakeEventsApi();
      const sink = startSink(api, { stateDelayMs: 1_500 });
      const unready = (name: string): Pod =>
        apiPod(name, { namespace: 'shop', hosts: 'h.test', paths: '80:/', ready: false });
      sink.listener(updateFor([unready('slow'), unready('quick')]));
      await delay(100);
      assert.equal(api.calls.length, 0, 'not yet');
      sink.listener(
        updateFor([unready('slow'), apiPod('quick', { namespace: 'shop', hosts: 'h.test', paths: '80:/' })]),
      );
      await eventually(() => api.calls.length === 1, 'the Event of the pod that stayed unready', 10_000);
      await delay(500);
      assert.deepEqual(
        api.calls.map((c) => c.event.note),
        ['NOT_READY: Ready=False: pod is not ready (Ready condition is False)'],
      );
      assert.equal(sink.stats().dropped, 0, 'a start-up that ended in time is not a dropped Event');
    },
  );
});

describe('events sink: API errors and stop', () => {
  it(
    'on 403 in one namespace, logs once, keeps writing ' + 'elsewhere, and retries that namespace with backoff',
    async () => {
      const api = new FakeEventsApi();
      const { logger, lines } = captureLogs();
      let forbidden = true;
      const defaultAnswer = api.answer;
      api.answer = (event) =>
        forbidden && event.metadata.namespace === 'locked' ? failure('forbidden', 403) : defaultAnswer(event);
      const sink = startSink(api, { logger, backoff: { initialMs: 50, maxMs: 200 } });
      sink.listener(updateFor([typo('a', 'locked'), typo('b', 'locked'), typo('c', 'open')]));
      await eventually(() => api.callsFor('locked') >= 4, 'several attempts in the refused namespace');
      assert.equal(api.callsFor('open'), 1, 'the other namespace got its Event at once');
      const warnings = lines.filter((l) => l.cause === 'forbidden');
      assert.equal(warnings.length, 1, `one log line for the cause, not one per attempt: ${JSON.stringify(lines)}`);
      assert.match(String(warnings[0]?.msg), /retried with backoff/);
      assert.ok(sink.stats().failed.forbidden >= 4);
      forbidden = false;
      await eventually(() => sink.stats().written === 3, 'the refused Events written once allowed', 5_000);
    },
  );

  it(
    'on server errors, pauses every write and retries them; an ' + 'Event the server finds invalid is not retried',
    async () => {
      const api = new FakeEventsApi();
      const { logger, lines } = captureLogs();
      let failures = 3;
      const defaultAnswer = api.answer;
      api.answer = (event) => {
        if (event.regarding.name === 'odd') return failure('invalid', 422);
        if (failures > 0) {
          failures--;
          return failure('server_error', 500);
        }
        return defaultAnswer(event);
      };
      const sink = startSink(api, { logger, backoff: { initialMs: 50, maxMs: 200 } });
      sink.listener(updateFor([typo('a'), typo('b'), typo('odd')]));
      await eventually(() => sink.stats().written === 2, 'both written after the server recovered', 5_000);
      await delay(300);
      assert.equal(
        api.calls.filter((c) => c.event.regarding.name === 'odd').length,
        1,
        'the invalid one was tried once',
      );
      assert.equal(sink.stats().failed.server_error, 3);
      assert.equal(sink.stats().failed.invalid, 1);
      assert.deepEqual(
        lines
          .filter((l) => l.level === 40)
          .map((l) => l.cause)
          .sort(),
        ['invalid', 'server_error'],
      );
    },
  );

  it('gives up on a write that hangs when stopped, and writes nothing after', async () => {
    const api = new FakeEventsApi();
    api.answer = () => 'hang';
    const sink = startSink(api);
    sink.listener(updateFor([typo('a')]));
    await eventually(() => sink.stats().inFlight === 1, 'the write in flight');
    await sink.stop();
    sink.listener(updateFor([typo('b')]));
    await delay(50);
    assert.equal(api.calls.length, 1);
    assert.equal(sink.stats().inFlight, 0);
  });
});

describe('events sink on a controller', () => {
  it('applies every table at once while the events API hangs', async () => {
    const api = new FakeEventsApi();
    api.answer = () => 'hang';
    let objects: Pod[] = [typo('a')];
    let notify = (): void => {};
    const source: ObjectSource = {
      start: async (onChange) => {
        notify = onChange;
      },
      snapshot: () => ({ pods: objects, secrets: [] }),
      stop: async () => {},
    };
    const applied: RouteTable[] = [];
    const plane: DataPlane = { apply: async (table) => void applied.push(table), close: async () => {} };
    const controller = createController({ config, source, dataPlanes: [plane], holdOffMs: 10, maxDelayMs: 50 });
    const sink = startSink(api, { maxInFlight: 1 });
    controller.subscribe(sink.listener);
    await controller.start();
    await eventually(() => sink.stats().inFlight === 1, 'a write that hangs');

    objects = [typo('a'), typo('b'), apiPod('new', { namespace: 'shop', hosts: 'new.test', paths: '80:/' })];
    notify();
    await controller.idle();
    assert.ok(
      applied.at(-1)?.routes.some((r) => r.host === 'new.test'),
      'the new table was applied',
    );
    // The sink takes the new table later, off the apply: the first write still hangs, the next waits.
    await eventually(() => sink.stats().queued === 1, 'the new rejection queued');
    assert.equal(sink.stats().inFlight, 1);
    await controller.stop();
  });
});

describe('the events sink a router gets', () => {
  it('is off, saying why once, with EVENTS=false or without an API server; on with a cluster', async () => {
    const cluster = await FakeApiServer.start();
    try {
      const cases = [
        { config: defaultConfig({ events: 'false' }), kubeConfig: cluster.kubeConfig(), off: 'EVENTS=false' },
        { config, kubeConfig: null, off: 'the source is a manifest file: there is no API server to write Events to' },
        { config, kubeConfig: cluster.kubeConfig(), off: null },
      ];
      for (const { config: cfg, kubeConfig, off } of cases) {
        const { logger, lines } = captureLogs();
        const sink = eventSinkFor(cfg, kubeConfig, logger);
        sinks.push(sink);
        assert.equal(sink.stats().enabled, off === null);
        assert.equal(sink.stats().off, off);
        assert.deepEqual(
          lines.map((l) => l.msg),
          [
            off === null
              ? 'rejected pods get a Kubernetes Event (Warning, RouteRejected)'
              : 'Kubernetes Events for rejected pods are off',
          ],
        );
      }
    } finally {
      await cluster.close();
    }
  });

  it('names the router by POD_NAME, or by the host name', () => {
    assert.equal(reportingInstance(defaultConfig({ podName: 'k8s-router-x7k2p' })), 'k8s-router-x7k2p');
    assert.equal(reportingInstance(config), hostname());
  });
});
