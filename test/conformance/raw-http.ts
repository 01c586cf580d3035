import net from 'node:net';

// A client that writes requests byte for byte (no Host, two Host headers, HTTP/1.0,
// dot segments: things Node's own client would fix or refuse) and reads one response,
// telling a closed-without-answer connection from an answer.

export type RawOutcome =
  | { kind: 'dropped'; bytes: number }
  | { kind: 'response'; status: number; headers: [string, string][]; body: Buffer };

export interface RawRequest {
  method: string;
  target: string;
  version?: '1.0' | '1.1';
  headers: [string, string][];
  body?: string | Buffer;
}

export function serializeRequest(r: RawRequest): Buffer {
  const head = [`${r.method} ${r.target} HTTP/${r.version ?? '1.1'}`, ...r.headers.map(([k, v]) => `${k}: ${v}`)].join('\r\n');
  const body = r.body === undefined ? Buffer.alloc(0) : Buffer.from(r.body);
  return Buffer.concat([Buffer.from(`${head}\r\n\r\n`, 'latin1'), body]);
}

function headerEnd(buf: Buffer): number {
  return buf.indexOf('\r\n\r\n');
}

/** The body of a complete response in `rest`, or null when more bytes are needed. */
function completeBody(headers: [string, string][], rest: Buffer, noBody: boolean, closed: boolean): Buffer | null {
  if (noBody) return Buffer.alloc(0);
  const te = headers.find(([k]) => k.toLowerCase() === 'transfer-encoding')?.[1];
  if (te !== undefined && /chunked/i.test(te)) {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const lineEnd = rest.indexOf('\r\n', at);
      if (lineEnd < 0) return null;
      const size = Number.parseInt(rest.subarray(at, lineEnd).toString('latin1'), 16);
      if (Number.isNaN(size)) throw new Error('bad chunk size');
      if (size === 0) return Buffer.concat(parts);
      if (rest.length < lineEnd + 2 + size + 2) return null;
      parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
  }
  const cl = headers.find(([k]) => k.toLowerCase() === 'content-length')?.[1];
  if (cl !== undefined) {
    const n = Number(cl);
    return rest.length >= n ? rest.subarray(0, n) : null;
  }
  return closed ? rest : null;
}

export function parseResponse(data: Buffer, noBody: boolean, closed: boolean): RawOutcome | null {
  const end = headerEnd(data);
  if (end < 0) return null;
  const lines = data.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number((lines[0] ?? '').split(' ')[1]);
  const headers = lines.slice(1).map((l): [string, string] => {
    const colon = l.indexOf(':');
    return [l.slice(0, colon), l.slice(colon + 1).trim()];
  });
  const interim = status >= 100 && status < 200 && status !== 101;
  if (interim) return parseResponse(data.subarray(end + 4), noBody, closed);
  const body = completeBody(headers, data.subarray(end + 4), noBody || status === 204 || status === 304 || status === 101, closed);
  return body === null ? null : { kind: 'response', status, headers, body };
}

/** Sends one request on a new connection and reads one response (or the close). */
export function sendRaw(port: number, request: RawRequest | Buffer, timeoutMs = 10_000): Promise<RawOutcome> {
  const bytes = Buffer.isBuffer(request) ? request : serializeRequest(request);
  const noBody = !Buffer.isBuffer(request) && request.method === 'HEAD';
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
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
    const timer = setTimeout(() => finish(new Error(`no complete answer within ${timeoutMs} ms; got ${JSON.stringify(data.toString('latin1'))}`)), timeoutMs);
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
