import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { afterEach, describe, it, mock } from 'node:test';
import { pino } from 'pino';
import { defaultConfig } from '../src/core/config.js';
import { createController, type Controller, type ControllerOptions } from '../src/control/controller.js';
import type { DataPlane } from '../src/core/data-plane.js';
import type { Pod, Secret } from '../src/core/kube-objects.js';
import { objectKey } from '../src/core/kube-objects.js';
import type { RouteTable } from '../src/core/route-table.js';
import type { ObjectSource } from '../src/sources/source.js';
import { apiKeySecret, pod } from './support/objects.js';

// The controller against an in-memory source and data planes that record what they get.

class FakeSource implements ObjectSource {
  private readonly pods = new Map<string, Pod>();
  private readonly secrets = new Map<string, Secret>();
  private onChange: (() => void) | null = null;
  snapshotError: Error | null = null;

  async start(onChange: () => void): Promise<void> {
    this.onChange = onChange;
  }

  snapshot(): { pods: Pod[]; secrets: Secret[] } {
    if (this.snapshotError) throw this.snapshotError;
    return { pods: [...this.pods.values()], secrets: [...this.secrets.values()] };
  }

  async stop(): Promise<void> {
    this.onChange = null;
  }

  /** Stores the objects and notifies, as a watch event would. */
  put(...objects: Array<Pod | Secret>): void {
    for (const obj of objects) {
      if (obj.kind === 'Secret') this.secrets.set(objectKey(obj), obj);
      else this.pods.set(objectKey(obj), obj as Pod);
    }
    this.onChange?.();
  }

  remove(pod: Pod): void {
    this.pods.delete(objectKey(pod));
    this.onChange?.();
  }

  /** A notification without a change in the objects (e.g. a watch that reconnected). */
  touch(): void {
    this.onChange?.();
  }
}

class RecordingPlane implements DataPlane {
  readonly applied: Array<{ table: RouteTable; at: number }> = [];
  /** Makes the next applies fail this way. */
  failWith: ((table: RouteTable) => never) | null = null;

  async apply(table: RouteTable): Promise<void> {
    this.applied.push({ table, at: Date.now() });
    if (this.failWith) this.failWith(table);
  }

  async close(): Promise<void> {}

  hosts(i = this.applied.length - 1): string[] {
    return (this.applied[i]?.table.routes ?? []).map((r) => r.host);
  }
}

/** A plane whose apply throws before returning a promise, which the interface does not allow. */
class ThrowingPlane implements DataPlane {
  calls = 0;
  apply(): Promise<void> {
    this.calls++;
    throw new Error('data plane exploded');
  }
  async close(): Promise<void> {}
}

const config = defaultConfig();
const routable = (n: number, ip = `10.0.${Math.floor(n / 250)}.${(n % 250) + 1}`): Pod =>
  pod(`pod-${n}`, { ip, hosts: `h${n}.example.com`, paths: '80:/' });

const running: Controller[] = [];
afterEach(async () => {
  for (const controller of running.splice(0)) await controller.stop();
  mock.timers.reset();
});

function setup(options: Partial<ControllerOptions> = {}) {
  const source = new FakeSource();
  const plane = new RecordingPlane();
  const controller = createController({ config, source, dataPlanes: [plane], ...options });
  running.push(controller);
  return { source, plane, controller };
}

function capturedLogger() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

/**
 * With the clock faked, a build must not pause (a pause lets the test tick the fake clock
 * on, which would move the apply times these tests check).
 */
const FAKE_CLOCK_SLICE = Number.POSITIVE_INFINITY;

/** Lets promise callbacks run; setImmediate is never faked here. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Advances the fake clock one millisecond at a time so applies finish between ticks. */
async function advance(ms: number, each?: (now: number) => void): Promise<void> {
  for (let i = 0; i < ms; i++) {
    mock.timers.tick(1);
    await settle();
    each?.(Date.now());
    await settle();
  }
}

describe('controller', () => {
  it('applies the initial table on start', async () => {
    const { source, plane, controller } = setup();
    source.put(routable(1));
    await controller.start();
    assert.equal(plane.applied.length, 1);
    assert.deepEqual(plane.hosts(), ['h1.example.com']);
  });

  it('turns a burst of 1,000 changes into one build and one apply', async () => {
    const { source, plane, controller } = setup();
    await controller.start();
    for (let i = 0; i < 1000; i++) source.put(routable(i));
    await controller.idle();
    const stats = controller.stats();
    assert.equal(stats.changes, 1000);
    assert.equal(stats.tablesBuilt, 2); // the initial table and the burst
    assert.equal(stats.applies, 2);
    assert.equal(plane.applied.length, 2);
    assert.equal(plane.applied[1]?.table.routes.length, 1000);
  });

  it('builds a big table in slices, letting the event loop run in between', async () => {
    const { source, plane, controller } = setup({ buildSliceMs: 1 });
    for (let i = 0; i < 20_000; i++) source.put(routable(i));
    let turns = 0;
    let spinning = true;
    const spin = (): void => {
      turns++;
      if (spinning) setImmediate(spin);
    };
    setImmediate(spin);
    await controller.start();
    spinning = false;
    const { buildPauses } = controller.stats();
    assert.ok(buildPauses > 0, `the build of 20,000 pods never paused (${JSON.stringify(controller.stats())})`);
    assert.ok(turns >= buildPauses, `the event loop turned ${turns} times during ${buildPauses} pauses`);
    assert.equal(plane.applied[0]?.table.routes.length, 20_000);
  });

  it('applies the very table it built when one pod changes among many, with the others unchanged', async () => {
    const { source, plane, controller } = setup({ holdOffMs: 1, maxDelayMs: 5 });
    for (let i = 0; i < 500; i++) source.put(routable(i));
    await controller.start();
    source.put(routable(7, '10.9.9.9'));
    await controller.idle();
    const [first, second] = plane.applied.map((a) => a.table);
    assert.equal(second?.routes.find((r) => r.host === 'h7.example.com')?.backends[0]?.ip, '10.9.9.9');
    // Routes that did not change are the same objects: the data planes reuse what they built for them.
    assert.equal(second?.routes.filter((r, i) => r === first?.routes[i]).length, 499);
  });
});

describe('controller: equal tables and publishing', () => {
  it('does not apply a table equal to the one applied', async () => {
    const { source, plane, controller } = setup();
    source.put(routable(1), routable(2));
    await controller.start();
    source.touch();
    await controller.idle();
    // The same pods again, arriving in the other order.
    source.put(routable(2), routable(1));
    await controller.idle();
    const stats = controller.stats();
    assert.equal(stats.tablesBuilt, 3);
    assert.equal(stats.skippedUnchanged, 2);
    assert.equal(stats.applies, 1);
    assert.equal(plane.applied.length, 1);
  });

  it('publishes each new table once, with a version, before the data planes apply it', async () => {
    const { source, plane, controller } = setup();
    const seen: Array<{ version: number; hosts: string[]; applied: number; pods: number }> = [];
    controller.subscribe((update) => {
      seen.push({
        version: update.version,
        hosts: update.table.routes.map((r) => r.host),
        applied: plane.applied.length,
        pods: update.pods.length,
      });
    });
    const throwing = controller.subscribe(() => {
      throw new Error('a subscriber that fails');
    });
    source.put(routable(1));
    await controller.start();
    source.touch(); // no change: nothing new to publish
    await controller.idle();
    throwing();
    source.put(routable(2));
    await controller.idle();
    assert.deepEqual(seen, [
      { version: 1, hosts: ['h1.example.com'], applied: 0, pods: 1 },
      { version: 2, hosts: ['h1.example.com', 'h2.example.com'], applied: 1, pods: 2 },
    ]);
    assert.equal(controller.latest()?.version, 2);
    assert.equal(plane.applied.length, 2, 'a failing subscriber does not stop the apply');
    const stats = controller.stats();
    assert.ok(
      stats.lastBuildMs !== null && stats.lastBuildMs >= 0 && stats.buildMsTotal >= stats.lastBuildMs,
      JSON.stringify(stats),
    );
  });
});

describe('with a fake clock', () => {
  it('waits for the hold-off after a single change, and no longer', async () => {
    const { source, plane, controller } = setup({ holdOffMs: 100, maxDelayMs: 250, buildSliceMs: FAKE_CLOCK_SLICE });
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    await controller.start();
    source.put(routable(1));
    await advance(99);
    assert.equal(plane.applied.length, 1);
    await advance(1);
    assert.equal(plane.applied.length, 2);
    assert.equal(plane.applied[1]?.at, 100);
  });

  it('coalesces a burst spread over 200 ms into one apply at the max delay', async () => {
    const { source, plane, controller } = setup({ holdOffMs: 100, maxDelayMs: 250, buildSliceMs: FAKE_CLOCK_SLICE });
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    await controller.start();
    let n = 0;
    source.put(routable(n++));
    // Five changes a millisecond, never quiet for the hold-off.
    await advance(200, () => {
      for (let i = 0; i < 5; i++) source.put(routable(n++));
    });
    await advance(100);
    assert.equal(n, 1001);
    assert.deepEqual(
      plane.applied.map((a) => [a.at, a.table.routes.length]),
      [
        [0, 0],
        [250, 1001],
      ],
    );
    assert.equal(controller.stats().tablesBuilt, 2);
  });

  it('applies every change within the max delay while changes never stop', async () => {
    const { source, plane, controller } = setup({ holdOffMs: 100, maxDelayMs: 250, buildSliceMs: FAKE_CLOCK_SLICE });
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
    await controller.start();
    const changedAt = new Map<string, number>();
    let n = 0;
    // A change every 20 ms (at 3, 23, 43, ... 983 ms): never 100 ms of quiet.
    await advance(1200, (now) => {
      if (now % 20 === 3 && now < 1000) {
        changedAt.set(`h${n}.example.com`, now);
        source.put(routable(n++));
      }
    });
    assert.equal(changedAt.size, 50);
    assert.deepEqual(
      plane.applied.map((a) => a.at),
      [0, 253, 513, 773, 1033],
    );
    for (const [host, at] of changedAt) {
      const first = plane.applied.find((a) => a.table.routes.some((r) => r.host === host));
      assert.ok(first !== undefined && first.at - at <= 250, `${host} changed at ${at}, applied at ${first?.at}`);
    }
  });
});

describe('controller: refused and failed applies', () => {
  it('retries a refused table on the next change, and only on the data plane that refused it', async () => {
    const source = new FakeSource();
    const healthy = new RecordingPlane();
    const refusing = new RecordingPlane();
    const controller = createController({
      config,
      source,
      dataPlanes: [healthy, refusing],
      holdOffMs: 5,
      maxDelayMs: 10,
    });
    running.push(controller);
    await controller.start();

    refusing.failWith = () => {
      throw new Error('nginx refused the config');
    };
    source.put(routable(1));
    await controller.idle();
    assert.equal(controller.stats().applyFailures, 1);

    refusing.failWith = null;
    source.touch();
    await controller.idle();
    source.touch();
    await controller.idle();
    assert.deepEqual(
      refusing.applied.map((a) => a.table.routes.length),
      [0, 1, 1],
    );
    assert.deepEqual(
      healthy.applied.map((a) => a.table.routes.length),
      [0, 1],
    );
    assert.equal(controller.stats().skippedUnchanged, 1);
  });

  it(
    'after a failed apply, applies again even a table equal to the one served before: the plane may hold the ' +
      'failed one',
    async () => {
      // An nginx reload that timed out may still have loaded the new config. If the objects then
      // go back to what they were, the previous table must be applied again, not skipped.
      const { source, plane, controller } = setup({ holdOffMs: 5, maxDelayMs: 10 });
      source.put(routable(1));
      await controller.start();
      plane.failWith = () => {
        throw new Error('nginx did not confirm the reload');
      };
      source.put(routable(2));
      await controller.idle();
      plane.failWith = null;
      source.remove(routable(2));
      await controller.idle();
      assert.deepEqual(
        plane.applied.map((_, i) => plane.hosts(i)),
        [['h1.example.com'], ['h1.example.com', 'h2.example.com'], ['h1.example.com']],
      );
    },
  );
});

describe('controller: throwing planes and stop', () => {
  it('survives a data plane that throws and a source whose snapshot throws', async () => {
    const source = new FakeSource();
    const throwing = new ThrowingPlane();
    const plane = new RecordingPlane();
    const { logger, lines } = capturedLogger();
    const controller = createController({
      config,
      source,
      dataPlanes: [throwing, plane],
      holdOffMs: 5,
      maxDelayMs: 10,
      logger,
    });
    running.push(controller);
    await controller.start();
    assert.equal(throwing.calls, 1);
    assert.equal(plane.applied.length, 1);

    source.snapshotError = new Error('cache torn');
    source.put(routable(1));
    await controller.idle();
    assert.equal(controller.stats().buildFailures, 1);
    assert.ok(lines.some((l) => l.includes('cache torn')));

    source.snapshotError = null;
    source.touch();
    await controller.idle();
    assert.deepEqual(plane.hosts(), ['h1.example.com']);
    // Once on start, once after the snapshot works again: a failed build applies nothing.
    assert.equal(throwing.calls, 2);
    assert.equal(controller.stats().applyFailures, 2);
    assert.ok(lines.some((l) => l.includes('data plane exploded')));
  });

  it('ignores changes after stop', async () => {
    const source = new FakeSource();
    const plane = new RecordingPlane();
    let notify: () => void = () => undefined;
    const controller = createController({
      config,
      source: {
        ...source,
        start: async (onChange) => void (notify = onChange),
        snapshot: () => source.snapshot(),
        stop: async () => undefined,
      },
      dataPlanes: [plane],
      holdOffMs: 1,
      maxDelayMs: 2,
    });
    await controller.start();
    await controller.stop();
    source.put(routable(1));
    notify();
    await new Promise((resolve) => setTimeout(resolve, 20));
    await controller.idle();
    assert.equal(plane.applied.length, 1);
    assert.equal(controller.stats().changes, 0);
  });
});

describe('controller: log lines', () => {
  it(
    'describes at most 100 routes and rejections per log line and counts the rest, and no change a description ' +
      'cannot show',
    async () => {
      const { logger, lines } = capturedLogger();
      const { source, controller } = setup({ logger, holdOffMs: 1, maxDelayMs: 5 });
      source.put(apiKeySecret('default', 'first key'));
      await controller.start();
      for (let i = 0; i < 250; i++)
        source.put(routable(i), pod(`idle-${i}`, { ready: false, hosts: `idle${i}.example.com`, paths: '80:/' }));
      await controller.idle();
      // Another key: every route changes, but what a log line says of them does not.
      source.put(apiKeySecret('default', 'second key'));
      await controller.idle();
      const changes = lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.msg === 'route table changed');
      assert.equal(changes.length, 3);
      const big = changes[1] as {
        routesAdded: string[];
        rejectionsAdded: string[];
        truncated: Record<string, number>;
        routes: number;
      };
      assert.equal(big.routesAdded.length, 100);
      assert.equal(big.rejectionsAdded.length, 100);
      assert.deepEqual(big.truncated, { routesAdded: 250, rejectionsAdded: 250 });
      assert.equal(big.routes, 250);
      assert.deepEqual(
        [changes[2]?.routesAdded, changes[2]?.routesRemoved, changes[2]?.truncated],
        [[], [], undefined],
      );
    },
  );
});

describe('controller: logs of changes', () => {
  it('logs routes added and removed and rejections with their reasons, never an API key', async () => {
    const { logger, lines } = capturedLogger();
    const { source, plane, controller } = setup({ logger, holdOffMs: 5, maxDelayMs: 10 });
    const secret = apiKeySecret('team-a', 'very-secret-key');
    const base64Key = secret.data?.['api-key'] as string;
    const keyed = pod('web', { namespace: 'team-a', ip: '10.1.0.1', hosts: 'keyed.example.com', paths: '80:/' });
    const open = pod('open', { ip: '10.1.0.2', hosts: 'open.example.com', paths: '80:/' });
    const badPort = pod('bad', { ip: '10.1.0.3', hosts: 'bad.example.com', paths: '8080:/' });
    source.put(secret, keyed, open);
    await controller.start();
    assert.equal(plane.applied[0]?.table.routes[0]?.apiKey, base64Key);

    source.remove(open);
    source.put(badPort);
    await controller.idle();
    plane.failWith = (table) => {
      throw new Error(`unknown directive near "${table.routes[0]?.apiKey}"`);
    };
    source.put(pod('open', { ip: '10.1.0.9', hosts: 'open.example.com', paths: '80:/' }));
    await controller.idle();

    const changes = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === 'route table changed');
    assert.equal(changes.length, 3);
    assert.deepEqual(changes[0]?.routesAdded, [
      'keyed.example.com/ (namespace team-a, API key required) -> team-a/web@10.1.0.1:80',
      'open.example.com/ (namespace default) -> default/open@10.1.0.2:80',
    ]);
    assert.deepEqual(changes[1]?.routesRemoved, ['open.example.com/ (namespace default) -> default/open@10.1.0.2:80']);
    assert.deepEqual(changes[1]?.routesAdded, []);
    assert.deepEqual(changes[1]?.rejectionsAdded, [
      'default/bad metadata.annotations.routingPaths="8080:/": no valid PORT:PATH entry in the annotation [NO_PATHS]',
      'default/bad metadata.annotations.routingPaths="8080:/": port 8080 is not a containerPort of the pod ' +
        '[PORT_NOT_DECLARED]',
    ]);
    assert.deepEqual(changes[2]?.routesAdded, ['open.example.com/ (namespace default) -> default/open@10.1.0.9:80']);
    const refused = lines.find((l) => l.includes('refused the route table'));
    assert.ok(refused?.includes('<redacted>'));
    const all = lines.join('');
    assert.ok(!all.includes(base64Key), 'the API key as sent in the header was logged');
    assert.ok(!all.includes('very-secret-key'), 'the API key in plain text was logged');
  });
});
