import type { ClientLimits } from '../../nginx/client-directives.js';
import { VANISH } from './conversation.js';
import type { EdgeCase } from './edge-harness.js';

// The hand-written edges, by family. `expect` pins nginx's answer where the rule is worth
// reading off the case ("414 closed pod:0": a 414, the connection closed, nothing reached
// the pod); `differs` pins both sides of an intended difference (see the README, "Where
// the in-process proxy differs from nginx").

const head = (host: string, extra: readonly string[] = []): string =>
  [`Host: ${host}`, ...extra].map((l) => `${l}\r\n`).join('');
const request = (
  method: string,
  target: string,
  version: string,
  host: string,
  extra: readonly string[] = [],
  body = '',
): string => `${method} ${target} ${version}\r\n${head(host, extra)}\r\n${body}`;
const get = (host: string, extra: readonly string[] = []): string => request('GET', '/', 'HTTP/1.1', host, extra);
const post = (host: string, extra: readonly string[], body: string): string =>
  request('POST', '/', 'HTTP/1.1', host, extra, body);

const OK = '200 open pod:1';
const BAD = '400 closed pod:0';
/** What the proxy gives a request Node's parser refuses where nginx passes it on. */
const NODE_REFUSES = { nginx: OK, proxy: BAD };

function edge(name: string, bytes: (host: string) => string, expect?: string): EdgeCase {
  return { name, bytes: (host) => [bytes(host)], ...(expect === undefined ? {} : { expect }) };
}

function differs(
  name: string,
  bytes: (host: string) => string,
  difference: { nginx: string; proxy: string },
): EdgeCase {
  return { name, bytes: (host) => [bytes(host)], differs: difference };
}

/** A request line of `length` bytes in all, CRLF included. */
function lineOf(length: number): string {
  return `/${'a'.repeat(length - 'GET / HTTP/1.1\r\n'.length)}`;
}

/** A header line of `length` bytes in all, CRLF included. */
function headerOf(length: number, name = 'X-Long'): string {
  return `${name}: ${'b'.repeat(length - name.length - 4)}`;
}

// nginx: client_header_buffer_size 1k, large_client_header_buffers 4 8k.
const AROUND_8K = [8190, 8191, 8192, 8193, 8194];

export const SIZE_CASES: EdgeCase[] = [
  ...[1023, 1024, 1025, ...AROUND_8K, 16_384, 40_000, 70_000].map((n) =>
    edge(
      `request line of ${n} bytes`,
      (h) => request('GET', lineOf(n), 'HTTP/1.1', h),
      n <= 8192 ? OK : '414 closed pod:0',
    ),
  ),
  ...[1023, 1024, 1025, ...AROUND_8K, 16_384, 40_000, 70_000].map((n) =>
    edge(`one header line of ${n} bytes`, (h) => get(h, [headerOf(n)]), n <= 8192 ? OK : BAD),
  ),
  // Four large buffers: lines of 8 KiB fill one each, and the empty line ending the head needs one more.
  ...[3, 4, 5].map((count) =>
    edge(
      `${count} header lines of 8192 bytes`,
      (h) =>
        get(
          h,
          Array.from({ length: count }, (_, i) => headerOf(8192, `X-L${i}`)),
        ),
      count <= 3 ? OK : BAD,
    ),
  ),
  // Lines that leave a buffer's end unused: the head fits in fewer bytes than 4 x 8 KiB.
  ...[6, 7, 8].map((count) =>
    edge(`${count} header lines of 4200 bytes`, (h) =>
      get(
        h,
        Array.from({ length: count }, (_, i) => headerOf(4200, `X-M${i}`)),
      ),
    ),
  ),
  edge('a request line of 8000 bytes and three headers of 8000', (h) =>
    request(
      'GET',
      lineOf(8000),
      'HTTP/1.1',
      h,
      Array.from({ length: 3 }, (_, i) => headerOf(8000, `X-N${i}`)),
    ),
  ),
  edge('a request line of 8000 bytes and four headers of 8000', (h) =>
    request(
      'GET',
      lineOf(8000),
      'HTTP/1.1',
      h,
      Array.from({ length: 4 }, (_, i) => headerOf(8000, `X-N${i}`)),
    ),
  ),
  // nginx 1.22 as Debian ships it takes at most 1000 header lines, not counting those it ignores.
  ...[100, 200, 999, 1000, 1500].map((n) =>
    edge(
      `Host and ${n} more headers`,
      (h) =>
        get(
          h,
          Array.from({ length: n }, (_, i) => `X-H${i}: ${i}`),
        ),
      n < 1000 ? OK : BAD,
    ),
  ),
  edge(
    'Host and 1000 headers nginx ignores (underscores)',
    (h) =>
      get(
        h,
        Array.from({ length: 1000 }, (_, i) => `X_H${i}: ${i}`),
      ),
    OK,
  ),
  edge(
    'Host and 3000 short headers',
    (h) =>
      get(
        h,
        Array.from({ length: 3000 }, () => 'X: 1'),
      ),
    BAD,
  ),
];

export const VERSION_CASES: EdgeCase[] = [
  ...(
    [
      ['HTTP/1.0', '200 closed pod:1'],
      ['HTTP/1.1', OK],
      ['HTTP/0.9', BAD],
      ['HTTP/2.0', '505 closed pod:0'],
      ['HTTP/3.0', '505 closed pod:0'],
      ['HTTP/9.9', '505 closed pod:0'],
      ['HTTP/10.0', '505 closed pod:0'],
      ['HTTP/2', '505 closed pod:0'],
      ['HTTP/01.1', BAD],
      ['HTTP/1', BAD],
      ['HTTP/1.', BAD],
      ['http/1.1', BAD],
      ['HTTPS/1.1', BAD],
      ['HTTP/1.1x', BAD],
      ['HTTP/1.a', BAD],
      ['HTTP/', BAD],
      ['FOO', BAD],
    ] as const
  ).map(([version, expect]) => edge(`version ${version}`, (h) => request('GET', '/', version, h), expect)),
  edge(
    'HTTP/2.0 to an unknown host (the version is read first)',
    () => request('GET', '/', 'HTTP/2.0', 'unknown.test'),
    '505 closed pod:0',
  ),
  edge(
    'HTTP/2.0 with a path above the root (the version is read first)',
    (h) => request('GET', '/..', 'HTTP/2.0', h),
    '505 closed pod:0',
  ),
  edge(
    'HTTP/3.0 in a request line of 9000 bytes (the length comes first)',
    (h) => request('GET', lineOf(9000), 'HTTP/3.0', h),
    '414 closed pod:0',
  ),
  edge('the HTTP/2 connection preface', () => 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', BAD),
  differs('version HTTP/1.2 (nginx serves it as HTTP/1.1)', (h) => request('GET', '/', 'HTTP/1.2', h), NODE_REFUSES),
  differs('version HTTP/1.10', (h) => request('GET', '/', 'HTTP/1.10', h), NODE_REFUSES),
  differs('a space after the version', (h) => request('GET', '/', 'HTTP/1.1 ', h), NODE_REFUSES),
  // HTTP/0.9's request without a version: nginx sees no Host and closes; Node waits for more.
  {
    name: 'an HTTP/0.9 request (no version)',
    bytes: () => ['GET /\r\n'],
    differs: { nginx: '- closed pod:0', proxy: '- open pod:0' },
  },
  // nginx lets the last Connection header decide (keep-alive); Node's parser reads nothing
  // more once a request said close, so the proxy closes. The pod gets `Connection: close` from both.
  differs(
    'Connection: close, then Connection: keep-alive (Node reads nothing after a close)',
    (h) => `GET / HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n`,
    { nginx: '200 open pod:1', proxy: '200 closed pod:1' },
  ),
];

const KNOWN_METHODS = [
  'GET',
  'POST',
  'PUT',
  'DELETE',
  'OPTIONS',
  'PATCH',
  'PROPFIND',
  'PROPPATCH',
  'MKCOL',
  'COPY',
  'MOVE',
  'LOCK',
  'UNLOCK',
  'SEARCH',
  'PURGE',
  'LINK',
  'UNLINK',
  'REPORT',
  'ACL',
  'M-SEARCH',
  'NOTIFY',
  'SUBSCRIBE',
  'MKCALENDAR',
];

export const METHOD_CASES: EdgeCase[] = [
  ...KNOWN_METHODS.map((m) => edge(`method ${m}`, (h) => request(m, '/', 'HTTP/1.1', h), OK)),
  { name: 'method HEAD', bytes: (h) => [request('HEAD', '/', 'HTTP/1.1', h)], heads: [0], expect: OK },
  ...['get', 'Get', 'G@T', 'GET\t'].map((m) =>
    edge(`method ${JSON.stringify(m)}`, (h) => request(m, '/', 'HTTP/1.1', h), BAD),
  ),
  edge('no method', (h) => request('', '/', 'HTTP/1.1', h), BAD),
  edge('TRACE', (h) => request('TRACE', '/', 'HTTP/1.1', h), '405 closed pod:0'),
  edge('TRACE to an unknown host', () => request('TRACE', '/', 'HTTP/1.1', 'unknown.test'), '405 closed pod:0'),
  edge('CONNECT to an authority (no URI nginx reads)', (h) => request('CONNECT', `${h}:443`, 'HTTP/1.1', h), BAD),
  edge('CONNECT /', (h) => request('CONNECT', '/', 'HTTP/1.1', h), '405 closed pod:0'),
  edge('CONNECT to an absolute URI', (h) => request('CONNECT', `http://${h}/`, 'HTTP/1.1', h), '405 closed pod:0'),
  edge('CONNECT / to an unknown host', () => request('CONNECT', '/', 'HTTP/1.1', 'unknown.test'), '405 closed pod:0'),
  edge(
    'CONNECT / with a body',
    (h) => request('CONNECT', '/', 'HTTP/1.1', h, ['Content-Length: 5'], 'hello'),
    '405 closed pod:0',
  ),
  edge(
    'CONNECT / with a body still to come',
    (h) => request('CONNECT', '/', 'HTTP/1.1', h, ['Content-Length: 5'], 'he'),
    '405 open pod:0',
  ),
  edge(
    'CONNECT / with a chunked body',
    (h) => request('CONNECT', '/', 'HTTP/1.1', h, ['Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\n\r\n'),
    '405 closed pod:0',
  ),
  // Node hands the proxy a CONNECT's connection as bytes: it does not wait for a chunked body.
  differs(
    'CONNECT / with a chunked body still to come',
    (h) => request('CONNECT', '/', 'HTTP/1.1', h, ['Transfer-Encoding: chunked'], ''),
    { nginx: '405 open pod:0', proxy: '405 closed pod:0' },
  ),
  edge('CONNECT / without Host in HTTP/1.1', () => 'CONNECT / HTTP/1.1\r\n\r\n', BAD),
  edge('CONNECT / without Host in HTTP/1.0', () => 'CONNECT / HTTP/1.0\r\n\r\n', '405 closed pod:0'),
  edge('OPTIONS *', (h) => request('OPTIONS', '*', 'HTTP/1.1', h), BAD),
  edge('DELETE with a body', (h) => request('DELETE', '/', 'HTTP/1.1', h, ['Content-Length: 4'], 'gone'), OK),
  edge(
    'GET with a chunked body',
    (h) => request('GET', '/', 'HTTP/1.1', h, ['Transfer-Encoding: chunked'], '4\r\nbody\r\n0\r\n\r\n'),
    OK,
  ),
  ...['FOO', 'BREW', 'PRI', 'X'.repeat(100)].map((m) =>
    differs(
      `unknown method ${m.length > 10 ? `of ${m.length} letters` : m}`,
      (h) => request(m, '/', 'HTTP/1.1', h),
      NODE_REFUSES,
    ),
  ),
];

const CHUNKED_BODY = '5\r\nhello\r\n0\r\n\r\n';

export const CODING_CASES: EdgeCase[] = [
  ...(
    [
      ['chunked', OK],
      ['Chunked', OK],
      ['CHUNKED', OK],
      [' chunked', OK],
      ['gzip', '501 closed pod:0'],
      ['gzip, chunked', '501 closed pod:0'],
      ['chunked, gzip', '501 closed pod:0'],
      ['chunked, chunked', '501 closed pod:0'],
      ['identity', '501 closed pod:0'],
      ['deflate', '501 closed pod:0'],
      ['foo', '501 closed pod:0'],
      ['', '501 closed pod:0'],
    ] as const
  ).map(([coding, expect]) =>
    edge(
      `Transfer-Encoding ${JSON.stringify(coding)}`,
      (h) => post(h, [`Transfer-Encoding: ${coding}`], CHUNKED_BODY),
      expect,
    ),
  ),
  edge(
    'Transfer-Encoding twice',
    (h) => post(h, ['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], CHUNKED_BODY),
    BAD,
  ),
  edge(
    'Transfer-Encoding gzip, then chunked',
    (h) => post(h, ['Transfer-Encoding: gzip', 'Transfer-Encoding: chunked'], CHUNKED_BODY),
    BAD,
  ),
  edge(
    'chunked in HTTP/1.0',
    (h) => request('POST', '/', 'HTTP/1.0', h, ['Transfer-Encoding: chunked'], CHUNKED_BODY),
    BAD,
  ),
  edge('gzip in HTTP/1.0', (h) => request('POST', '/', 'HTTP/1.0', h, ['Transfer-Encoding: gzip'], CHUNKED_BODY), BAD),
  edge(
    'chunked and Content-Length',
    (h) => post(h, ['Transfer-Encoding: chunked', 'Content-Length: 5'], CHUNKED_BODY),
    BAD,
  ),
  edge(
    'gzip and Content-Length',
    (h) => post(h, ['Content-Length: 5', 'Transfer-Encoding: gzip'], 'hello'),
    '501 closed pod:0',
  ),
  // Node stops at a Content-Length after a Transfer-Encoding; nginx reads the head whole.
  edge(
    'gzip, then Content-Length',
    (h) => request('GET', '/', 'HTTP/1.1', h, ['Transfer-Encoding: gzip', 'Content-Length: 0']),
    '501 closed pod:0',
  ),
  edge(
    'chunked, then Content-Length',
    (h) => post(h, ['Transfer-Encoding: chunked', 'Content-Length: 5'], CHUNKED_BODY),
    BAD,
  ),
  // nginx reads the body a refused request declares before it closes (5 s without a byte of it, at most).
  edge(
    'chunked, then Content-Length, without the body',
    (h) => post(h, ['Transfer-Encoding: chunked', 'Content-Length: 100'], ''),
    '400 open pod:0',
  ),
  edge(
    'gzip, then Content-Length, without the body',
    (h) => post(h, ['Transfer-Encoding: gzip', 'Content-Length: 100'], ''),
    '501 open pod:0',
  ),
  edge(
    'chunked, gzip, then Content-Length',
    (h) => request('GET', '/', 'HTTP/1.1', h, ['Transfer-Encoding: chunked, gzip', 'Content-Length: 0']),
    '501 closed pod:0',
  ),
  edge(
    'chunked, gzip, then Content-Length twice',
    (h) =>
      request('GET', '/', 'HTTP/1.1', h, [
        'Transfer-Encoding: chunked, gzip',
        'Content-Length: 0',
        'Content-Length: 0',
      ]),
    BAD,
  ),
  edge(
    'gzip, then a Content-Length that is no number',
    (h) => post(h, ['Transfer-Encoding: gzip', 'Content-Length: x'], ''),
    BAD,
  ),
  edge(
    'gzip, then Content-Length, without Host',
    () => 'POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 0\r\n\r\n',
    BAD,
  ),
  edge(
    'gzip without Host (the Host check comes first)',
    () => 'POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n',
    BAD,
  ),
  edge(
    'gzip to an unknown host (the coding check comes first)',
    () => post('unknown.test', ['Transfer-Encoding: gzip'], ''),
    '501 closed pod:0',
  ),
  edge(
    'gzip with TRACE (the coding check comes first)',
    (h) => request('TRACE', '/', 'HTTP/1.1', h, ['Transfer-Encoding: gzip']),
    '501 closed pod:0',
  ),
  edge('an empty chunked body', (h) => post(h, ['Transfer-Encoding: chunked'], '0\r\n\r\n'), OK),
  edge('chunk extensions', (h) => post(h, ['Transfer-Encoding: chunked'], '5;a=b\r\nhello\r\n0\r\n\r\n'), OK),
  edge('trailers', (h) => post(h, ['Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n'), OK),
  edge('a chunk size that is no number', (h) => post(h, ['Transfer-Encoding: chunked'], 'zz\r\n'), BAD),
  edge('a chunk size past 64 bits', (h) => post(h, ['Transfer-Encoding: chunked'], 'fffffffffffffffff\r\n'), BAD),
  edge('a chunk without its CRLF', (h) => post(h, ['Transfer-Encoding: chunked'], '5\r\nhelloXX0\r\n\r\n'), BAD),
  edge(
    'a chunked body over 1 MiB',
    (h) => post(h, ['Transfer-Encoding: chunked'], `100001\r\n${'x'.repeat(0x100001)}\r\n0\r\n\r\n`),
    '413 closed pod:0',
  ),
  // nginx refuses a chunk that announces more than client_max_body_size; Node tells the
  // proxy what arrived, not what a chunk announced, and the proxy waits for the rest.
  {
    name: 'a chunk announcing more than 1 MiB, and only its start',
    bytes: (h) => [post(h, ['Transfer-Encoding: chunked'], `100001\r\n${'x'.repeat(1000)}`)],
    differs: { nginx: '413 closed pod:0', proxy: '- open pod:0' },
  },
  edge(
    'gzip and Content-Length, and the body',
    (h) => post(h, ['Content-Length: 5', 'Transfer-Encoding: gzip'], 'hello'),
    '501 closed pod:0',
  ),
  edge(
    'TRACE with a chunked body that is no chunk (nginx reads it, fails, closes)',
    (h) => request('TRACE', '/', 'HTTP/1.1', h, ['Transfer-Encoding: chunked'], 'hello'),
    '405 closed pod:0',
  ),
  edge(
    'TRACE with a body',
    (h) => request('TRACE', '/', 'HTTP/1.1', h, ['Content-Length: 5'], 'hello'),
    '405 closed pod:0',
  ),
];

export const LENGTH_CASES: EdgeCase[] = [
  ...(
    [
      ['5', OK],
      ['05', OK],
      ['5 ', OK],
      [' 5', OK],
      ['+5', BAD],
      ['-1', BAD],
      ['5,5', BAD],
      ['0x5', BAD],
      ['5.0', BAD],
      ['abc', BAD],
      ['', BAD],
      ['99999999999999999999', BAD],
    ] as const
  ).map(([length, expect]) =>
    edge(`Content-Length ${JSON.stringify(length)}`, (h) => post(h, [`Content-Length: ${length}`], 'hello'), expect),
  ),
  edge('Content-Length twice, the same', (h) => post(h, ['Content-Length: 5', 'Content-Length: 5'], 'hello'), BAD),
  edge('Content-Length twice, different', (h) => post(h, ['Content-Length: 5', 'Content-Length: 6'], 'hello!'), BAD),
  edge('Content-Length 0', (h) => post(h, ['Content-Length: 0'], ''), OK),
  // nginx answers at once, then reads the body it refused before closing (5 s without a byte of it, at most).
  edge(
    'Content-Length just over 1 MiB, without the body',
    (h) => post(h, ['Content-Length: 1048577'], ''),
    '413 open pod:0',
  ),
  edge(
    'Content-Length just over 1 MiB, and the body',
    (h) => post(h, ['Content-Length: 1048577'], 'x'.repeat(1048577)),
    '413 closed pod:0',
  ),
  edge(
    'Content-Length of exactly 1 MiB, and the body',
    (h) => post(h, ['Content-Length: 1048576'], 'x'.repeat(1048576)),
    OK,
  ),
];

const LINES = ['GET / HTTP/1.1', 'Host: HOST', 'X-A: 1'];
const lines = (h: string, joins: [string, string, string]): string => {
  const [l0, l1, l2] = LINES.map((l) => l.replace('HOST', h)) as [string, string, string];
  return `${l0}${joins[0]}${l1}${joins[1]}${l2}${joins[2]}${joins[2]}`;
};

export const LINE_ENDING_CASES: EdgeCase[] = [
  edge('CRLF throughout', (h) => lines(h, ['\r\n', '\r\n', '\r\n']), OK),
  edge('bare CR throughout', (h) => lines(h, ['\r', '\r', '\r']), BAD),
  edge('a bare CR ending a header', (h) => `GET / HTTP/1.1\r\nHost: ${h}\rX-A: 1\r\n\r\n`, BAD),
  edge('CR CR LF', (h) => lines(h, ['\r\r\n', '\r\r\n', '\r\r\n']), BAD),
  edge('empty lines before the request line', (h) => `\r\n\r\n${get(h)}`, OK),
  edge('obs-fold with a space', (h) => get(h, ['X-Fold: a', ' b']), BAD),
  edge('obs-fold with a tab', (h) => get(h, ['X-Fold: a', '\tb']), BAD),
  edge('a tab inside a header value', (h) => get(h, ['X-A: a\tb']), OK),
  edge('a space before the colon', (h) => get(h, ['X-A : 1']), BAD),
  edge('a first header that starts with a space', (h) => `GET / HTTP/1.1\r\n X-A: 1\r\nHost: ${h}\r\n\r\n`, BAD),
  edge('two spaces after the method', (h) => `GET  / HTTP/1.1\r\n${head(h)}\r\n`, OK),
  edge('a tab between method and target', (h) => `GET\t/ HTTP/1.1\r\n${head(h)}\r\n`, BAD),
  differs('CR CR LF ending a header', (h) => `GET / HTTP/1.1\r\nHost: ${h}\r\r\nX-A: 1\r\n\r\n`, NODE_REFUSES),
  differs('bare LF throughout', (h) => lines(h, ['\n', '\n', '\n']), NODE_REFUSES),
  differs('bare LF after the request line', (h) => lines(h, ['\n', '\r\n', '\r\n']), NODE_REFUSES),
  differs('bare LF after a header', (h) => lines(h, ['\r\n', '\n', '\r\n']), NODE_REFUSES),
  differs('bare LF ending the head', (h) => `GET / HTTP/1.1\r\nHost: ${h}\r\n\n`, NODE_REFUSES),
];

export const CHARACTER_CASES: EdgeCase[] = [
  edge('an 8-bit header value', (h) => get(h, ['X-A: a\xe9b']), OK),
  edge('a NUL in a header value', (h) => get(h, ['X-A: a\x00b']), BAD),
  edge('an underscore in a header name (nginx drops the header)', (h) => get(h, ['X_A: 1']), OK),
  edge('a dot in a header name (nginx drops the header)', (h) => get(h, ['X.A: 1']), OK),
  edge('an empty header name', (h) => get(h, [': x']), BAD),
  edge('a space in the target', (h) => `GET /a b HTTP/1.1\r\n${head(h)}\r\n`, BAD),
  edge('a control character in the target', (h) => `GET /a\x01b HTTP/1.1\r\n${head(h)}\r\n`, BAD),
  edge('a fragment in the target', (h) => `GET /a#b HTTP/1.1\r\n${head(h)}\r\n`, OK),
  edge('an absolute https target', (h) => `GET https://${h}/ HTTP/1.1\r\n${head(h)}\r\n`, OK),
  differs('a control character in a header value', (h) => get(h, ['X-A: a\x01b']), NODE_REFUSES),
  differs('DEL in a header value', (h) => get(h, ['X-A: a\x7fb']), NODE_REFUSES),
  differs('an 8-bit header name', (h) => get(h, ['X-\xe9: 1']), NODE_REFUSES),
  differs('a header line without a colon', (h) => get(h, ['X-A']), NODE_REFUSES),
  differs('an 8-bit character in the target', (h) => `GET /a\xe9b HTTP/1.1\r\n${head(h)}\r\n`, NODE_REFUSES),
];

// Headers nginx 1.22 takes once: a second one is 400.
const UNIQUE = [
  'Host',
  'Content-Length',
  'Transfer-Encoding',
  'Authorization',
  'Expect',
  'If-Modified-Since',
  'If-Unmodified-Since',
  'If-Match',
  'If-None-Match',
  'If-Range',
  'Content-Range',
];
const REPEATABLE = [
  'User-Agent',
  'Referer',
  'Content-Type',
  'Range',
  'Cookie',
  'Accept',
  'Via',
  'X-Forwarded-For',
  'Date',
  'Keep-Alive',
  'TE',
  'Upgrade',
  'Connection',
];

export const REPEAT_CASES: EdgeCase[] = [
  ...UNIQUE.map((name) =>
    edge(
      `${name} twice`,
      (h) => get(h, [`${name}: ${name === 'Host' ? h : '0'}`, `${name}: ${name === 'Host' ? h : '0'}`]),
      BAD,
    ),
  ),
  ...REPEATABLE.map((name) => edge(`${name} twice`, (h) => get(h, [`${name}: a`, `${name}: b`]), OK)),
  edge(
    'Expect twice, to an unknown host (the repeat is found first)',
    () => get('unknown.test', ['Expect: x', 'Expect: x']),
    BAD,
  ),
];

export const PIPELINE_CASES: EdgeCase[] = [
  { name: 'two requests', bytes: (h) => [get(h) + get(h, ['X-Second: 1'])], requests: 2, expect: '200,200 open pod:2' },
  {
    name: 'five requests',
    bytes: (h) => [Array.from({ length: 5 }, (_, i) => get(h, [`X-N: ${i}`])).join('')],
    requests: 5,
    expect: '200,200,200,200,200 open pod:5',
  },
  {
    name: 'a request, then one with a bad version',
    bytes: (h) => [get(h) + request('GET', '/', 'HTTP/3.0', h)],
    requests: 2,
    expect: '200,505 closed pod:1',
  },
  {
    name: 'a request, then garbage',
    bytes: (h) => [`${get(h)}NOT HTTP\r\n\r\n`],
    requests: 2,
    expect: '200,400 closed pod:1',
  },
  {
    name: 'a request, then a line too long',
    bytes: (h) => [get(h) + request('GET', lineOf(9000), 'HTTP/1.1', h)],
    requests: 2,
    expect: '200,414 closed pod:1',
  },
  {
    name: 'a request, a TRACE, then another',
    bytes: (h) => [get(h) + request('TRACE', '/', 'HTTP/1.1', h) + get(h)],
    requests: 3,
    expect: '200,405 closed pod:1',
  },
  {
    name: 'a request, one without Host, then another',
    bytes: (h) => [`${get(h)}GET / HTTP/1.1\r\n\r\n${get(h)}`],
    requests: 3,
    expect: '200,400 closed pod:1',
  },
  {
    name: 'a bad request, then a good one',
    bytes: (h) => [`GET / HTTP/1.1\r\n\r\n${get(h)}`],
    requests: 2,
    expect: BAD,
  },
  {
    name: '"Connection: close", then another request',
    bytes: (h) => [get(h, ['Connection: close']) + get(h)],
    requests: 2,
    expect: '200 closed pod:1',
  },
  {
    name: 'HTTP/1.0, then another request',
    bytes: (h) => [request('GET', '/', 'HTTP/1.0', h) + get(h)],
    requests: 2,
    expect: '200 closed pod:1',
  },
  {
    name: 'HTTP/1.0 with keep-alive, then another request',
    bytes: (h) => [request('GET', '/', 'HTTP/1.0', h, ['Connection: keep-alive']) + get(h)],
    requests: 2,
    expect: '200,200 open pod:2',
  },
  {
    name: 'HEAD, then GET',
    bytes: (h) => [request('HEAD', '/', 'HTTP/1.1', h) + get(h)],
    requests: 2,
    heads: [0],
    expect: '200,200 open pod:2',
  },
  {
    name: 'a POST with a body, then GET',
    bytes: (h) => [post(h, ['Content-Length: 5'], 'hello') + get(h)],
    requests: 2,
    expect: '200,200 open pod:2',
  },
  {
    name: 'a chunked POST, then GET',
    bytes: (h) => [post(h, ['Transfer-Encoding: chunked'], CHUNKED_BODY) + get(h)],
    requests: 2,
    expect: '200,200 open pod:2',
  },
  {
    name: 'a request in three pieces',
    bytes: (h) => ['GET / HT', 30, `TP/1.1\r\nHost: ${h}\r\n`, 30, '\r\n'],
    expect: OK,
  },
  {
    name: 'a request, a pause, then another',
    bytes: (h) => [get(h), 100, get(h)],
    requests: 2,
    expect: '200,200 open pod:2',
  },
];

export const EDGE_FAMILIES: { family: string; cases: EdgeCase[] }[] = [
  { family: 'sizes of the request line and headers', cases: SIZE_CASES },
  { family: 'HTTP versions', cases: VERSION_CASES },
  { family: 'methods', cases: METHOD_CASES },
  { family: 'transfer codings', cases: CODING_CASES },
  { family: 'Content-Length', cases: LENGTH_CASES },
  { family: 'line endings and folding', cases: LINE_ENDING_CASES },
  { family: 'characters', cases: CHARACTER_CASES },
  { family: 'repeated headers', cases: REPEAT_CASES },
  { family: 'pipelining', cases: PIPELINE_CASES },
];

/** The client limits the LIMIT_CASES run with, on both sides: short, so that each case takes a second or two. */
export const SHORT_LIMITS: ClientLimits = {
  clientHeaderTimeoutMs: 600,
  clientBodyTimeoutMs: 600,
  keepaliveTimeoutMs: 600,
  keepaliveRequests: 3,
  clientMaxBodySize: 0,
};

/** Each character of `text` sent on its own, `ms` apart. */
const trickle = (text: string, ms: number): (string | number)[] => [...text].flatMap((c) => [c, ms]);

const BIG_BODY = 4 * 1024 * 1024;

export const LIMIT_CASES: EdgeCase[] = [
  {
    name: 'headers trickled past client_header_timeout',
    bytes: (h) => ['GET / HTTP/1.1\r\n', ...trickle(`Host: ${h}\r\n\r\n`, 100)],
    expect: '- closed pod:0',
  },
  {
    name: 'headers in pieces within client_header_timeout',
    bytes: (h) => ['GET / HT', 100, `TP/1.1\r\nHost: ${h}\r\n`, 100, '\r\n'],
    expect: OK,
  },
  {
    name: 'nothing sent for longer than client_header_timeout',
    bytes: (h) => [1_200, get(h)],
    expect: '- closed pod:0',
  },
  {
    name: "a second request's headers trickled past client_header_timeout",
    bytes: (h) => [get(h), 100, 'GET / HTTP/1.1\r\n', ...trickle(`Host: ${h}\r\n\r\n`, 100)],
    requests: 2,
    expect: '200 closed pod:1',
  },
  {
    name: 'idle past keepalive_timeout, then a request',
    bytes: (h) => [get(h), 1_300, get(h)],
    requests: 2,
    expect: '200 closed pod:1',
  },
  {
    name: 'idle within keepalive_timeout, then a request',
    bytes: (h) => [get(h), 150, get(h)],
    requests: 2,
    expect: '200,200 open pod:2',
  },
  {
    name: 'keepalive_requests reached by requests pipelined',
    bytes: (h) => [Array.from({ length: 4 }, () => get(h)).join('')],
    requests: 4,
    expect: '200,200,200 closed pod:3',
  },
  {
    name: 'keepalive_requests reached one request at a time',
    bytes: (h) => [get(h), 50, get(h), 50, get(h)],
    requests: 3,
    expect: '200,200,200 closed pod:3',
  },
  {
    name: 'a body paused past client_body_timeout',
    bytes: (h) => [post(h, ['Content-Length: 10'], 'hello'), 1_300, 'world'],
    expect: '- closed pod:0',
  },
  {
    name: 'a body in pieces within client_body_timeout',
    bytes: (h) => [post(h, ['Content-Length: 10'], 'hello'), 150, 'world'],
    expect: OK,
  },
  {
    name: `a body of ${BIG_BODY >> 20} MiB without a size limit`,
    bytes: (h) => [post(h, [`Content-Length: ${BIG_BODY}`], 'x'.repeat(BIG_BODY))],
    expect: OK,
  },
  {
    name: 'a client that vanishes while it sends its headers',
    bytes: (h) => [`GET / HTTP/1.1\r\nHost: ${h}\r\n`, 100, VANISH],
    expect: '- open pod:0',
  },
  {
    name: 'a client that vanishes while it sends its body',
    bytes: (h) => [post(h, ['Content-Length: 100'], 'x'.repeat(10)), 200, VANISH],
    expect: '- open pod:0',
  },
  {
    name: 'a client that vanishes while the pod prepares the answer',
    bytes: (h) => [request('GET', '/slow', 'HTTP/1.1', h), 300, VANISH],
    expect: '- open pod:1 cut:1',
  },
  {
    name: 'a client that vanishes while the answer streams',
    bytes: (h) => [request('GET', '/endless', 'HTTP/1.1', h), 300, VANISH],
    expect: '- open pod:1 cut:1',
  },
];
