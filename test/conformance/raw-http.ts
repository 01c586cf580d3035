import net from 'node:net';

// A client that writes requests byte for byte (no Host, two Host headers, HTTP/1.0,
// dot segments: things Node's own client would fix or refuse) and reads one response,
// telling a closed-without-answer connection from an answer.

export type RawOutcome =
  { kind: 'dropped'; bytes: number } | { kind: 'response'; status: number; headers: [string, string][]; body: Buffer };

export interface RawRequest {
  method: string;
  target: string;
  version?: '1.0' | '1.1';
  headers: [string, string][];
  body?: string | Buffer;
}

export function serializeRequest(r: RawRequest): Buffer {
  const head = [`${r.method} ${r.target} HTTP/${r.version ?? '1.1'}`, ...r.headers.map(([k, v]) => `${k}: ${v}`)].join(
    '\r\n',
  );
  const body = r.body === undefined ? Buffer.alloc(0) : Buffer.from(r.body);
  return Buffer.concat([Buffer.from(`${head}\r\n\r\n`, 'latin1'), body]);
}

function headerEnd(buf: Buffer): number {
  return buf.indexOf('\r\n\r\n');
}

/**
 * A chunked body at the start of `data`, de-chunked, and the bytes it took (trailers included); null when more bytes
 * are needed.
 */
export function readChunked(data: Buffer): { body: Buffer; used: number } | null {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', at);
    if (lineEnd < 0) return null;
    const size = Number.parseInt(data.subarray(at, lineEnd).toString('latin1'), 16);
    if (Number.isNaN(size)) throw new Error('bad chunk size');
    if (size === 0) {
      const end = data.indexOf('\r\n\r\n', lineEnd);
      return end < 0 ? null : { body: Buffer.concat(parts), used: end + 4 };
    }
    if (data.length < lineEnd + 2 + size + 2) return null;
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}

/** The body of a complete response at the start of `rest` and the bytes it took, or null when more bytes are needed. */
function completeBody(
  headers: [string, string][],
  rest: Buffer,
  noBody: boolean,
  closed: boolean,
): { body: Buffer; used: number } | null {
  if (noBody) return { body: Buffer.alloc(0), used: 0 };
  const te = headers.find(([k]) => k.toLowerCase() === 'transfer-encoding')?.[1];
  if (te !== undefined && /chunked/i.test(te)) return readChunked(rest);
  const cl = headers.find(([k]) => k.toLowerCase() === 'content-length')?.[1];
  if (cl !== undefined) {
    const n = Number(cl);
    return rest.length >= n ? { body: rest.subarray(0, n), used: n } : null;
  }
  return closed ? { body: rest, used: rest.length } : null;
}

/**
 * One response at the start of `data`, with its reason phrase and the bytes it took; null when more bytes are needed.
 */
export function readResponse(
  data: Buffer,
  noBody: boolean,
  closed: boolean,
): { status: number; reason: string; headers: [string, string][]; body: Buffer; used: number } | null {
  const end = headerEnd(data);
  if (end < 0) return null;
  const lines = data.subarray(0, end).toString('latin1').split('\r\n');
  const statusLine = lines[0] ?? '';
  const status = Number(statusLine.split(' ')[1]);
  const reason = statusLine.split(' ').slice(2).join(' ');
  const headers = lines.slice(1).map((l): [string, string] => {
    const colon = l.indexOf(':');
    return [l.slice(0, colon), l.slice(colon + 1).trim()];
  });
  const interim = status >= 100 && status < 200 && status !== 101;
  if (interim) {
    const next = readResponse(data.subarray(end + 4), noBody, closed);
    return next === null ? null : { ...next, used: next.used + end + 4 };
  }
  const rest = data.subarray(end + 4);
  const body = completeBody(headers, rest, noBody || status === 204 || status === 304 || status === 101, closed);
  if (body === null) return null;
  return { status, reason, headers, body: body.body, used: end + 4 + body.used };
}

export function parseResponse(data: Buffer, noBody: boolean, closed: boolean): RawOutcome | null {
  const r = readResponse(data, noBody, closed);
  return r === null ? null : { kind: 'response', status: r.status, headers: r.headers, body: r.body };
}

/**
 * Sends one request on a new connection and reads one response (or the close); from
 * `localAddress` when given (any 127.x.y.z on Linux), as a client at that address.
 */
export function sendRaw(
  port: number,
  request: RawRequest | Buffer,
  timeoutMs = 10_000,
  localAddress?: string,
): Promise<RawOutcome> {
  const bytes = Buffer.isBuffer(request) ? request : serializeRequest(request);
  const noBody = !Buffer.isBuffer(request) && request.method === 'HEAD';
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', ...(localAddress === undefined ? {} : { localAddress }) });
    let data = Buffer.alloc(0);
    let done = false;
    const finish = (outcome: RawOutcome | Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const timer = setTimeout(
      () =>
        finish(new Error(`no complete answer within ${timeoutMs} ms; got ${JSON.stringify(data.toString('latin1'))}`)),
      timeoutMs,
    );
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      try {
        const parsed = parseResponse(data, noBody, false);
        if (parsed !== null) finish(parsed);
      } catch (err) {
        finish(err as Error);
      }
    });
    const closed = (): void => {
      if (data.length === 0) {
        finish({ kind: 'dropped', bytes: 0 });
        return;
      }
      try {
        finish(parseResponse(data, noBody, true) ?? { kind: 'dropped', bytes: data.length });
      } catch (err) {
        finish(err as Error);
      }
    };
    socket.on('end', closed);
    socket.on('close', closed);
    // A reset without any answer is a dropped connection too.
    socket.on('error', () => closed());
  });
}
