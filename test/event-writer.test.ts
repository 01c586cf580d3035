import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { defaultConfig } from '../src/core/config.js';
import type { Pod } from '../src/core/kube-objects.js';
import { buildRouteTable } from '../src/core/route-table.js';
import { createEventSink } from '../src/events/event-sink.js';
import { createEventWriter } from '../src/events/event-writer.js';
import { eventName, rejectionEvent, type RouteRejectedEvent } from '../src/events/rejection-event.js';
import { delay, eventually } from './support/eventually.js';
import { FakeApiServer } from './support/fake-api-server.js';
import { pod } from './support/objects.js';

// Event writes through @kubernetes/client-node's EventsV1Api against the fake API server:
// what reaches the server, and how each answer is read.

function eventFor(namespace: string, podName: string, value = '9:/nope'): RouteRejectedEvent {
  const rejection = {
    namespace,
    pod: podName,
    field: 'metadata.annotations.routingPaths',
    value,
    code: 'PORT_NOT_DECLARED' as const,
    reason: 'port 9 is not a containerPort of the pod',
  };
  return rejectionEvent(
    { name: eventName(podName, `uid-${podName}`, rejection), uid: `uid-${podName}`, rejection },
    'router-0',
    Date.UTC(2025, 0, 1),
  );
}

let api: FakeApiServer;
const never = new AbortController().signal;

before(async () => {
  api = await FakeApiServer.start();
});
after(async () => {
  await api.close();
});

async function sortsRefusalsAndFailures(): Promise<void> {
  const write = createEventWriter(api.kubeConfig(), 300);
  api.refuseEvents('locked');
  const forbidden = await write(eventFor('locked', 'web-1'), never);
  assert.deepEqual(
    { ...forbidden, message: undefined },
    { ok: false, cause: 'forbidden', status: 403, message: undefined },
  );
  assert.match((forbidden as { message: string }).message, /cannot create resource "events"/);
  api.allowEvents('locked');

  api.failEvents(500, 1);
  assert.equal(((await write(eventFor('shop', 'web-2'), never)) as { cause?: string }).cause, 'server_error');
  api.failEvents(429, 1);
  assert.equal(((await write(eventFor('shop', 'web-2'), never)) as { cause?: string }).cause, 'throttled');

  const bad = { ...eventFor('shop', 'web-3'), reportingController: 'not a qualified name!' };
  const invalid = await write(bad, never);
  assert.equal((invalid as { cause?: string }).cause, 'invalid');
  assert.match((invalid as { message: string }).message, /reportingController/);

  api.stallEvents(true);
  const started = Date.now();
  assert.deepEqual(await write(eventFor('shop', 'web-4'), never), {
    ok: false,
    cause: 'timeout',
    message: 'no answer within 300 ms',
  });
  assert.ok(Date.now() - started < 5_000, 'the deadline cut the write');
  api.stallEvents(false);
  assert.deepEqual(await write(eventFor('shop', 'web-4'), never), { ok: true, created: true });
}

describe('event writer', () => {
  it('creates the Event as it was built, MicroTime included, and reads 409 as already reported', async () => {
    const write = createEventWriter(api.kubeConfig());
    const event = eventFor('shop', 'web-0');
    assert.deepEqual(await write(event, never), { ok: true, created: true });
    const stored = api.events.find((e) => e.name === event.metadata.name);
    assert.deepEqual(stored?.body, event, 'the body reached the server unchanged');
    assert.equal(stored?.body.eventTime, '2025-01-01T00:00:00.000000Z');
    assert.deepEqual(await write(event, never), { ok: true, created: false });
    assert.deepEqual(
      api.eventWrites.filter((w) => w.name === event.metadata.name).map((w) => w.status),
      [201, 409],
    );
  });

  it('sorts refusals and failures into causes', sortsRefusalsAndFailures);

  it('a burst of 1,000 rejected pods reaches the API server at EVENTS_QPS, not all at once', async (t) => {
    const qps = 50;
    const burst = 10;
    const config = defaultConfig();
    const pods: Pod[] = Array.from({ length: 1_000 }, (_, i) =>
      pod(`burst-${i}`, { namespace: 'burst', hosts: 'burst.test', paths: '80:/ 9:/nope', uid: `uid-burst-${i}` }),
    );
    const sink = createEventSink({
      write: createEventWriter(api.kubeConfig()),
      reportingInstance: 'router-0',
      qps,
      burst,
      stateDelayMs: 0,
    });
    const from = api.eventWrites.length;
    sink.listener({ version: 1, table: buildRouteTable(config, pods, []), builtAt: Date.now(), buildMs: 0, pods });
    await eventually(() => api.eventWrites.length - from >= burst, 'the first writes');
    await delay(3_000);
    await sink.stop();
    const times = api.eventWrites
      .slice(from)
      .filter((w) => w.namespace === 'burst')
      .map((w) => w.at);
    // In any one second, the server saw at most the burst plus a second's worth of writes
    // (plus a few for requests the busy test process delivered late, together).
    let busiest = 0;
    for (const start of times)
      busiest = Math.max(busiest, times.filter((at) => at >= start && at < start + 1_000).length);
    t.diagnostic(`${times.length} writes in about 3 s; busiest second: ${busiest}`);
    assert.ok(busiest <= burst + qps + 10, `busiest second had ${busiest} writes`);
    assert.ok(times.length < 1_000 && times.length >= burst + qps, `${times.length} writes in about 3 s`);
  });
});
