import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { EDGE_FAMILIES, LIMIT_CASES, SHORT_LIMITS } from './edge-cases.js';
import { EdgeBench, GENERATED_SLOTS, problems, type EdgeCase, type EdgeResult } from './edge-harness.js';
import type { Mode } from './harness.js';

// The edges of HTTP framing through documented nginx, dynamic nginx and the proxy: the hand-written families
// (edge-cases.ts), then generated requests of each family, GENERATED_SLOTS per run. Generated
// requests stay out of the intended differences (bare LF, methods and versions Node
// does not know, characters Node refuses), which the hand-written cases pin.

/** A generated request: plain data, so that a counterexample prints as the bytes sent. */
interface EdgeSpec {
  /** The bytes, with {HOST} for the case's host. */
  text: string;
  requests: number;
  heads: number[];
}

function fromSpec(spec: EdgeSpec, index: number): EdgeCase {
  const shown = spec.text.length > 300 ? `${spec.text.slice(0, 300)}...` : spec.text;
  return {
    name: `generated #${index}: ${JSON.stringify(shown)}`,
    bytes: (host) => [spec.text.replaceAll('{HOST}', host)],
    requests: spec.requests,
    heads: spec.heads,
  };
}

/**
 * The generated families run from a fixed seed in `npm test`, so that a rare difference the
 * generator stumbles on does not turn one CI run red and the next green; `EDGE_SEED=random`
 * (or a number) explores further, and a failure prints the seed that replays it.
 */
const EDGE_SEED: { seed?: number } =
  process.env.EDGE_SEED === 'random' ? {} : { seed: Number(process.env.EDGE_SEED ?? 20261125) };

const plain = (text: string, requests = 1, heads: number[] = []): EdgeSpec => ({ text, requests, heads });

/** Lengths at and around nginx's buffer sizes (1 KiB, 8 KiB), and a few small ones. */
const lengthArb = fc.oneof(
  fc.constantFrom(8, 20, 100, 500),
  fc.integer({ min: 1000, max: 1050 }),
  fc.integer({ min: 4000, max: 4200 }),
  fc.integer({ min: 8180, max: 8200 }),
);

const sizeArb: fc.Arbitrary<EdgeSpec> = fc
  .record({ line: fc.oneof(fc.constant(16), lengthArb), headers: fc.array(lengthArb, { minLength: 0, maxLength: 14 }) })
  .map(({ line, headers }) => {
    const target = `/${'a'.repeat(Math.max(0, line - 16))}`;
    const lines = headers.map((n, i) => `X-S${i}: ${'v'.repeat(Math.max(1, n - `X-S${i}`.length - 4))}\r\n`);
    return plain(`GET ${target} HTTP/1.1\r\nHost: {HOST}\r\n${lines.join('')}\r\n`);
  });

/**
 * "HTTP/" and digits, or near misses; not HTTP/1.x with another minor than 0 or 1 (an intended difference: nginx serves
 * it).
 */
const versionArb: fc.Arbitrary<string> = fc
  .oneof(
    fc
      .tuple(fc.stringMatching(/^[0-9]{1,3}$/), fc.option(fc.stringMatching(/^[0-9]{0,3}$/), { nil: undefined }))
      .map(([major, minor]) => `HTTP/${major}${minor === undefined ? '' : `.${minor}`}`),
    fc.constantFrom(
      'HTTP/1.1',
      'HTTP/1.0',
      'http/1.1',
      'HTTP/1.1x',
      'HTTP1.1',
      'HTTP/-1.1',
      'HTTP/1.1.1',
      'HTTPS/2.0',
      'HTTP/ 1.1',
    ),
  )
  .filter((v) => !/^HTTP\/1\.[0-9]+$/.test(v) || v === 'HTTP/1.0' || v === 'HTTP/1.1');

const versionSpecArb: fc.Arbitrary<EdgeSpec> = fc
  .record({
    version: versionArb,
    host: fc.constantFrom('{HOST}', 'unknown.test'),
    path: fc.constantFrom('/', '/a/../b', '/..'),
  })
  .map(({ version, host, path }) => plain(`GET ${path} ${version}\r\nHost: ${host}\r\n\r\n`));

const METHODS = [
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'OPTIONS',
  'PATCH',
  'TRACE',
  'CONNECT',
  'PROPFIND',
  'MKCOL',
  'LOCK',
  'PURGE',
  'SEARCH',
];
const CODINGS = ['chunked', 'Chunked', 'gzip', 'gzip, chunked', 'chunked, gzip', 'identity', ''];
// No length past client_max_body_size: nginx reads such a body before it closes, and each
// run would wait for it (the hand-written cases have those).
const LENGTHS = ['0', '5', '05', '-5', '5 ', 'x'];

const framingArb: fc.Arbitrary<EdgeSpec> = fc
  .record({
    method: fc.constantFrom(...METHODS),
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0'),
    host: fc.constantFrom('{HOST}', '{HOST}', '{HOST}', 'unknown.test', null),
    codings: fc.array(fc.constantFrom(...CODINGS), { maxLength: 2 }),
    lengths: fc.array(fc.constantFrom(...LENGTHS), { maxLength: 2 }),
    body: fc.constantFrom('', 'hello', '5\r\nhello\r\n0\r\n\r\n'),
    extra: fc.array(
      fc.constantFrom(
        'Expect: 100-continue',
        'Expect: 100-continue',
        'Authorization: a',
        'X_Under: 1',
        'Connection: close',
        'Connection: keep-alive',
      ),
      { maxLength: 2 },
    ),
  })
  .map(({ method, version, host, codings, lengths, body, extra }) => {
    const lines = [
      ...(host === null ? [] : [`Host: ${host}`]),
      ...codings.map((c) => `Transfer-Encoding: ${c}`),
      ...lengths.map((l) => `Content-Length: ${l}`),
      ...extra,
    ];
    return plain(
      `${method} / ${version}\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n${body}`,
      1,
      method === 'HEAD' ? [0] : [],
    );
  })
  // Nor CONNECT with a chunked body (an intended difference when the body is still to come).
  .filter((spec) => !/^CONNECT .*\r\nTransfer-Encoding: chunked\r\n/is.test(spec.text))
  // Nor `Connection: close` followed by `Connection: keep-alive`: an intended difference
  // (nginx keeps the connection; Node's parser reads nothing after a close), pinned by a case.
  .filter((spec) => !/\r\nConnection: close\r\n(?:.*\r\n)*?Connection: keep-alive\r\n/i.test(spec.text))
  // A Content-Length longer than the body sent leaves both sides waiting for the rest
  // (the hand-written cases have one of those).
  .filter((spec) => {
    const length = /Content-Length: *([0-9]+) *\r\n/.exec(spec.text)?.[1];
    const body = spec.text.slice(spec.text.indexOf('\r\n\r\n') + 4);
    return length === undefined || Number(length) <= body.length;
  });

const LINE_ENDS = ['\r\n', '\r\n', '\r\n', '\r', '\r\r\n', ' \r\n'];
/**
 * nginx takes several CRs before the LF ending a header line (an intended difference); on the request line it does not.
 */
const HEADER_LINE_ENDS = LINE_ENDS.filter((end) => end !== '\r\r\n');

const lineEndingArb: fc.Arbitrary<EdgeSpec> = fc
  .record({
    ends: fc.tuple(
      fc.constantFrom(...LINE_ENDS),
      fc.constantFrom(...HEADER_LINE_ENDS),
      fc.constantFrom(...HEADER_LINE_ENDS),
      fc.constantFrom(...HEADER_LINE_ENDS),
    ),
    fold: fc.constantFrom('', ' folded', '\tfolded'),
    leading: fc.constantFrom('', '\r\n'),
  })
  .map(({ ends, fold, leading }) => {
    const [a, b, c, d] = ends;
    const folded = fold === '' ? '' : `${fold}${c}`;
    return plain(`${leading}GET / HTTP/1.1${a}Host: {HOST}${b}X-A: 1${c}${folded}${d}`);
  })
  // A line ended by a space and CRLF is a request line with a space after its version (an intended difference) only on
  // the first line.
  .filter((spec) => !/^(\r\n)?GET \/ HTTP\/1\.1 \r\n/.test(spec.text))
  // Nor several CRs ending a header (nginx waits for their LF), as two ends that follow each other can make.
  .filter((spec) => !/\nHost:.*\r\r/s.test(spec.text));

const PIPELINE_PIECES = [
  'GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n',
  'GET /p?x=1 HTTP/1.1\r\nHost: {HOST}\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\n\r\nabc',
  'POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n',
  'GET / HTTP/1.0\r\nHost: {HOST}\r\n\r\n',
  'GET / HTTP/1.0\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: unknown.test\r\n\r\n',
  'GET / HTTP/1.1\r\n\r\n',
  'GET /.. HTTP/1.1\r\nHost: {HOST}\r\n\r\n',
  'GET / HTTP/2.0\r\nHost: {HOST}\r\n\r\n',
  'TRACE / HTTP/1.1\r\nHost: {HOST}\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: gzip\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: {HOST}\r\nExpect: 100-continue\r\n\r\n',
];

const pipelineArb: fc.Arbitrary<EdgeSpec> = fc
  .array(fc.constantFrom(...PIPELINE_PIECES), { minLength: 2, maxLength: 4 })
  .map((pieces) => plain(pieces.join(''), pieces.length));

const GENERATED: { family: string; arb: fc.Arbitrary<EdgeSpec>; runs: number }[] = [
  { family: 'sizes around the buffers', arb: sizeArb, runs: 5 },
  { family: 'versions', arb: versionSpecArb, runs: 3 },
  { family: 'methods, codings and lengths', arb: framingArb, runs: 5 },
  { family: 'line endings and folding', arb: lineEndingArb, runs: 2 },
  { family: 'pipelines', arb: pipelineArb, runs: 3 },
];

/** Defines the edge cases, documented nginx against dynamic nginx and the proxy, in `mode`. */
export function edgeConformance(mode: Mode): void {
  let bench: EdgeBench;

  before(async () => {
    bench = await EdgeBench.start(mode);
  });

  after(async () => {
    await bench?.close();
  });

  // Every hand-written case at once: the slowest (a connection left open) sets the time.
  let handWritten: Promise<EdgeResult[]> | undefined;
  const resultsOf = (cases: readonly EdgeCase[]): Promise<EdgeResult[]> => {
    handWritten ??= bench.run(EDGE_FAMILIES.flatMap((f) => f.cases));
    return handWritten.then((results) => results.filter((r) => cases.includes(r.edge)));
  };

  for (const { family, cases } of EDGE_FAMILIES) {
    test(
      `edges, ${family}: ${cases.length} cases answered as nginx answers them, ` +
        `or as the README says they differ${mode.label}`,
      async () => {
        const results = await resultsOf(cases);
        assert.equal(results.length, cases.length, 'every case ran');
        const found = problems(results);
        assert.deepEqual(found, [], found.join('\n\n'));
      },
    );
  }

  test(
    'edges, client timeouts, keep-alive limits, a big body and clients that vanish: ' +
      `${LIMIT_CASES.length} cases answered as nginx answers them${mode.label}`,
    async () => {
      // A bench of their own: the limits set short, on both sides.
      const limited = await EdgeBench.start(mode, SHORT_LIMITS);
      try {
        const found = problems(await limited.run(LIMIT_CASES, undefined, true));
        assert.deepEqual(found, [], found.join('\n\n'));
      } finally {
        await limited.close();
      }
    },
  );

  for (const { family, arb, runs } of GENERATED) {
    const title = `edges, generated ${family}: documented nginx, dynamic nginx and the proxy agree`;
    test(`${title} (${runs} runs of ${GENERATED_SLOTS} requests)${mode.label}`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(arb, { minLength: GENERATED_SLOTS, maxLength: GENERATED_SLOTS }), async (specs) => {
          const found = problems(await bench.run(specs.map(fromSpec), GENERATED_SLOTS));
          assert.deepEqual(found, [], found.join('\n\n'));
        }),
        { numRuns: runs, includeErrorInReport: true, ...EDGE_SEED },
      );
    });
  }
}
