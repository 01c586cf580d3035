import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { readChunked } from '../conformance/raw-http.js';
import type { ReceivedRequest } from './pods.js';

// A pod that reads requests byte by byte instead of through Node's HTTP parser, so it
// takes whatever a data plane passes on (methods Node does not know, control characters,
// heads of any size) and tells exactly what came: the request line and each header line
// as they arrived. It answers 200 with the JSON description of the request, as the
// pods of pods.ts do, and keeps the connection unless the request said "Connection: close".
// Bodies are framed by Content-Length or chunked encoding, as a data plane sends them.
// Two paths answer slowly, to see a data plane give up on the pod when its client goes
// away: /slow answers after SLOW_MS, /endless streams its answer until the connection
// closes. Either one, cut off by a close, is logged in `cut`.

const SLOW_MS = 1_000;
const ENDLESS_CHUNK_MS = 20;

export interface RawPod {
  readonly name: string;
  readonly ip: string;
  readonly port: number;
  /** Requests that reached this pod, in order. */
  readonly received: ReceivedRequest[];
  /** The Host of each request whose answer the data plane cut off by closing the connection. */
  readonly cut: string[];
  close(): Promise<void>;
}

interface Head {
  method: string;
  uri: string;
  httpVersion: string;
  headers: [string, string][];
}

function parseHead(text: string): Head {
  const [line = '', ...rest] = text.split('\r\n');
  const [method = '', uri = '', version = ''] = line.split(' ');
  const headers = rest.map((l): [string, string] => {
    const colon = l.indexOf(':');
    return colon < 0 ? [l, ''] : [l.slice(0, colon), l.slice(colon + 1).trim()];
  });
  return { method, uri, httpVersion: version.replace(/^HTTP\//, ''), headers };
}

const header = (head: Head, name: string): string | undefined =>
  head.headers.find(([k]) => k.toLowerCase() === name)?.[1];

/** The body at the start of `data` (de-chunked), and the bytes it took; null when incomplete. */
function readBody(head: Head, data: Buffer): { body: Buffer; used: number } | null {
  if (/chunked/i.test(header(head, 'transfer-encoding') ?? '')) return readChunked(data);
  const length = Number(header(head, 'content-length') ?? '0');
  return data.length < length ? null : { body: data.subarray(0, length), used: length };
}

/**
 * How the pod answers on one connection: a JSON description of each request, except
 * /endless (chunks until the client leaves) and /slow (after SLOW_MS). What returns false
 * ends the reading of requests on the connection.
 */
function responder(socket: Socket, name: string, cut: string[]): (h: Head, description: ReceivedRequest) => boolean {
  /** Answers `h`; false when the connection is to close after it. */
  const answer = (h: Head, description: ReceivedRequest): boolean => {
    const json = Buffer.from(JSON.stringify(description), 'latin1');
    const close = /close/i.test(header(h, 'connection') ?? '');
    socket.write(
      `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pod: ${name}\r\nContent-Length: ${json.length}\r\n` +
        `${close ? 'Connection: close\r\n' : ''}\r\n`,
    );
    // An answer to HEAD has no body (a kept pod connection would otherwise carry it into the next
    // answer).
    if (h.method !== 'HEAD') socket.write(json);
    if (close) socket.end();
    return !close;
  };
  /** Answers after `answering` unless the connection closes first, which is logged in `cut`. */
  const answerLater = (h: Head, answering: (done: () => void) => void): void => {
    let done = false;
    const host = header(h, 'host') ?? '';
    socket.once('close', () => {
      if (!done) cut.push(host);
    });
    answering(() => (done = true));
  };
  return (h, description) => {
    if (h.uri === '/endless') {
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n');
      answerLater(h, () => {
        const timer = setInterval(() => socket.write('5\r\nmore\n\r\n'), ENDLESS_CHUNK_MS);
        socket.once('close', () => clearInterval(timer));
      });
      return false;
    }
    if (h.uri === '/slow') {
      answerLater(h, (done) => {
        const timer = setTimeout(() => {
          done();
          answer(h, description);
        }, SLOW_MS);
        socket.once('close', () => clearTimeout(timer));
      });
      // Requests pipelined behind it are not read: a data plane sends none.
      return false;
    }
    return answer(h, description);
  };
}

export async function startRawPod(name: string, ip: string): Promise<RawPod> {
  const received: ReceivedRequest[] = [];
  const cut: string[] = [];
  const sockets = new Set<Socket>();
  const serve = (socket: Socket): void => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let data = Buffer.alloc(0);
    let head: Head | null = null;
    const respond = responder(socket, name, cut);
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      for (;;) {
        if (head === null) {
          const end = data.indexOf('\r\n\r\n');
          if (end < 0) return;
          head = parseHead(data.subarray(0, end).toString('latin1'));
          data = data.subarray(end + 4);
        }
        let body: ReturnType<typeof readBody>;
        try {
          body = readBody(head, data);
        } catch {
          // A body framed wrong: no request a data plane should pass on.
          socket.destroy();
          return;
        }
        if (body === null) return;
        data = data.subarray(body.used);
        const h = head;
        head = null;
        const description: ReceivedRequest = {
          pod: name,
          ...h,
          body: body.body.toString('latin1'),
          remotePort: socket.remotePort ?? 0,
        };
        received.push(description);
        if (!respond(h, description)) return;
      }
    });
  };
  const server = net.createServer(serve);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, ip, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    name,
    ip,
    port,
    received,
    cut,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
