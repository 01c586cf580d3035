import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compareRoutes, type Route, type RouteTable } from '../src/core/route-table.js';
import { deltaTo, MAX_DELTA_BYTES, TableWireError, wholeTable, type SentTable } from '../nginx/table-wire.js';

// The delta the router sends dynamic nginx: the lines of the routes added or changed since
// the table nginx holds, a line per route removed, checked as a whole table is; and null
// (the whole table goes) when a delta cannot be made or is not the smaller send.

const route = (host: string, path: string, over: Partial<Route> = {}): Route => ({
  host,
  path,
  namespace: 'default',
  apiKey: null,
  affinity: null,
  backends: [{ pod: 'web-0', namespace: 'default', ip: '10.1.0.5', port: 8080 }],
  ...over,
});
const tableOf = (routes: Route[]): RouteTable => ({ routes, rejections: [] });
const sent = (routes: Route[], version = 'v1'): SentTable => wholeTable(tableOf(routes), version).sent;

/** The body lines of a delta text, without its header and end lines. */
function bodyOf(text: string): string[] {
  return text.split('\n').slice(1, -2);
}

describe('the delta to the next table', () => {
  const a = route('a.test', '/');
  const b = route('b.test', '/');
  const c = route('c.test', '/x');

  it('names its base, its version and the routes it leaves, and carries only what changed', () => {
    const moved = route('b.test', '/', {
      backends: [{ pod: 'web-1', namespace: 'default', ip: '10.1.0.6', port: 80 }],
    });
    const added = route('b.test', '/new');
    const delta = deltaTo(sent([a, b, c]), tableOf([a, moved, added]), 'v2');
    assert.ok(delta !== null);
    assert.equal(delta.text.split('\n')[0], 'k8s-router-delta 1 v1 v2 3');
    assert.ok(delta.text.endsWith('\nend v2\n'));
    assert.deepEqual(bodyOf(delta.text), [
      'b.test\t/\t-\trr\t10.1.0.6,80,default,web-1',
      'b.test\t/new\t-\trr\t10.1.0.5,8080,default,web-0',
      '-\tc.test\t/x',
    ]);
    assert.equal(delta.sent.lineBytes, wholeTable(tableOf([a, moved, added]), 'v2').sent.lineBytes);
  });

  it('leaves out a route rebuilt the same (another object, the same line)', () => {
    const delta = deltaTo(sent([a, b]), tableOf([route('a.test', '/'), b]), 'v2');
    assert.ok(delta !== null);
    assert.deepEqual(bodyOf(delta.text), []);
  });

  it('checks every line it writes as the whole table does', () => {
    assert.throws(
      () => deltaTo(sent([a, b]), tableOf([a, b, route('c.test', '/a b')]), 'v2'),
      (err: unknown) => err instanceof TableWireError && err.code === 'BAD_PATH',
    );
    assert.throws(
      () => deltaTo(sent([a]), tableOf([a]), 'v 2'),
      (err: unknown) => err instanceof TableWireError && err.code === 'BAD_VERSION',
    );
  });

  it('is null when the next table is not in route table order or has a route twice: the whole send says why', () => {
    assert.equal(deltaTo(sent([a, b, c]), tableOf([a, c, b]), 'v2'), null);
    assert.equal(deltaTo(sent([a, b]), tableOf([a, b, b]), 'v2'), null);
    assert.equal(deltaTo(sent([a, b]), tableOf([a, route('b.test', '/'), b]), 'v2'), null);
    assert.throws(
      () => wholeTable(tableOf([a, b, b]), 'v2'),
      (err: unknown) => err instanceof TableWireError && err.code === 'DUPLICATE_ROUTE',
    );
  });
});

describe('the delta: when the whole table goes instead', () => {
  const a = route('a.test', '/');
  const b = route('b.test', '/');
  const c = route('c.test', '/x');

  it('is null against a base out of order, and when it would be larger than the whole table', () => {
    assert.equal(deltaTo(sent([b, a]), tableOf([b, a, c]), 'v2'), null);
    assert.equal(deltaTo(sent([a]), tableOf([b]), 'v2'), null, 'one route for another');
  });

  it(`is null over ${MAX_DELTA_BYTES} bytes`, () => {
    const many = (n: number, pod: string): Route[] =>
      Array.from({ length: n }, (_, i) =>
        route(`h${String(i).padStart(5, '0')}.test`, '/', {
          backends: [{ pod, namespace: 'default', ip: '10.1.0.5', port: 8080 }],
        }),
      );
    const base = sent(many(12000, 'web-0'));
    const changed = (n: number): Route[] => [...many(n, 'web-1'), ...base.table.routes.slice(n)];
    assert.ok(deltaTo(base, tableOf(changed(1000)), 'v2') !== null, '1,000 changed lines');
    assert.equal(deltaTo(base, tableOf(changed(6000)), 'v2'), null, '6,000 changed lines');
  });
});

describe('the delta applied', () => {
  it('leaves, applied to the base, the lines of the next table (random tables sharing route objects)', () => {
    const pool = ['a.test', 'b.test', 'c.test'].flatMap((host) =>
      ['/', '/x', '/x/', '/y'].map((path, i) => [route(host, path), route(host, path, { apiKey: `a${i}==` })]),
    );
    // A table: for each host and path, no route, its first object, or its second.
    const tableArbitrary = fc
      .array(fc.integer({ min: 0, max: 2 }), { minLength: pool.length, maxLength: pool.length })
      .map((picks) => pool.flatMap((pair, i) => (picks[i] === 0 ? [] : [pair[(picks[i] as number) - 1] as Route])));
    fc.assert(
      fc.property(tableArbitrary, tableArbitrary, (before, after) => {
        const base = sent(before);
        const delta = deltaTo(base, tableOf(after), 'v2');
        const whole = wholeTable(tableOf(after), 'v2');
        if (delta === null) return;
        const lines = new Map(before.map((r) => [`${r.host}\t${r.path}`, wholeLine(r)]));
        for (const line of bodyOf(delta.text)) {
          const fields = line.split('\t');
          if (fields[0] === '-') lines.delete(`${fields[1]}\t${fields[2]}`);
          else lines.set(`${fields[0]}\t${fields[1]}`, line);
        }
        assert.deepEqual([...lines.values()].sort(), bodyOf(whole.text).sort());
        assert.equal(delta.sent.lineBytes, whole.sent.lineBytes);
        assert.ok([...after].every((r, i) => i === 0 || compareRoutes(after[i - 1] as Route, r) < 0));
      }),
      { numRuns: 300 },
    );
  });
});

/** The line of `route` in a whole table. */
function wholeLine(r: Route): string {
  return bodyOf(wholeTable(tableOf([r]), 'x').text)[0] as string;
}
