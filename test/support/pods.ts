import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import net from 'node:net';
import { WebSocketServer } from 'ws';

// Test pods: HTTP servers on 127.0.0.x loopback addresses (Linux routes all of 127/8 to
// lo) that answer with what they received, so a test can check which pod answered and
// exactly what the router sent it. A pod's mode, or the request header
// x-test-behaviour, makes it misbehave.

export type PodBehaviour =
  /** 200 with the JSON description of the request. */
  | 'echo'
  /** Headers and a first chunk, then waits for release() (or 5 s) before the rest. */
  | 'stream'
  /** Headers and part of the body, then a TCP reset. */
  | 'reset-mid-response'
  /** Reads the request, then resets without answering. */
  | 'reset-before-response'
  /** Reads the request and never answers (until the pod closes). */
  | 'hang'
  /** Answers after `slowMs`. */
  | 'slow';

export interface ReceivedRequest {
  pod: string;
  method: string;
  /** The request-target exactly as received. */
  uri: string;
  httpVersion: string;
  /** [name, value] pairs in arrival order, names as sent. */
  headers: [string, string][];
  body: string;
  /** The router's side of the connection, to tell reused connections from new ones. */
  remotePort: number;
}

export interface TestPod {
  readonly name: string;
  readonly ip: string;
  readonly port: number;
  behaviour: PodBehaviour;
  slowMs: number;
  /** Requests that reached this pod, in order. */
  readonly received: ReceivedRequest[];
  /** Ends every 'stream' response that is waiting. */
  releaseStreams(): void;
  /** Whether a 'stream' response is still waiting for release. */
  readonly streamsWaiting: number;
  close(): Promise<void>;
  /**
   * Stops as a terminating pod does: refuses new connections, closes idle ones, lets the
   * requests in flight finish, then closes.
   */
  drain(): Promise<void>;
}

export const STREAM_FIRST_CHUNK = 'first chunk\n';
export const STREAM_REST = 'rest of the stream\n';
/** How long a stream waits for release before finishing by itself, so nothing hangs. */
const STREAM_SELF_RELEASE_MS = 5_000;

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('latin1');
}

function pairs(raw: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i] as string, raw[i + 1] as string]);
  return out;
}

/** Answers as `pod` behaves (or as the request's X-Test-Behaviour asks), noting what it received. */
async function answerAs(
  pod: TestPod,
  waitingStreams: Set<() => void>,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const name = pod.name;
  const body = await readBody(req);
  const description: ReceivedRequest = {
    pod: name,
    method: req.method ?? '',
    uri: req.url ?? '',
    httpVersion: req.httpVersion,
    headers: pairs(req.rawHeaders),
    body,
    remotePort: req.socket.remotePort ?? 0,
  };
  pod.received.push(description);
  const requested = req.headers['x-test-behaviour'];
  const behaviour = (typeof requested === 'string' ? requested : pod.behaviour) as PodBehaviour;
  const json = JSON.stringify(description);
  switch (behaviour) {
    case 'echo':
      res.writeHead(200, { 'Content-Type': 'application/json', 'X-Pod': name });
      res.end(json);
      return;
    case 'slow':
      setTimeout(() => {
        res.writeHead(200, { 'Content-Type': 'application/json', 'X-Pod': name });
        res.end(json);
      }, pod.slowMs);
      return;
    case 'stream': {
      res.writeHead(200, { 'Content-Type': 'text/plain', 'X-Pod': name });
      res.write(STREAM_FIRST_CHUNK);
      const finish = (): void => {
        clearTimeout(timer);
        waitingStreams.delete(finish);
        res.end(STREAM_REST);
      };
      const timer = setTimeout(finish, STREAM_SELF_RELEASE_MS);
      waitingStreams.add(finish);
      return;
    }
    case 'reset-mid-response':
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '100000', 'X-Pod': name });
      res.write('x'.repeat(1000), () => setTimeout(() => req.socket.resetAndDestroy(), 20));
      return;
    case 'reset-before-response':
      req.socket.resetAndDestroy();
      return;
    case 'hang':
      return;
  }
}

/** Echoes WebSocket messages on `server`'s upgrades, as `pod` behaves. */
function echoWebSockets(server: http.Server, pod: TestPod): WebSocketServer {
  // WebSocket echo: each message comes back prefixed with the pod name, so the answer
  // tells which pod it came from. 'reset-mid-response' resets after the first message.
  const wss = new WebSocketServer({ noServer: true });
  const name = pod.name;
  server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => {});
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => {});
      ws.on('message', (data) => {
        if (pod.behaviour === 'reset-mid-response') {
          (socket as Socket).resetAndDestroy();
          return;
        }
        ws.send(`${name}:${(data as Buffer).toString()}`);
      });
    });
  });
  return wss;
}

export async function startPod(
  name: string,
  ip: string,
  options: { behaviour?: PodBehaviour; port?: number } = {},
): Promise<TestPod> {
  const sockets = new Set<Socket>();
  const waitingStreams = new Set<() => void>();
  const received: ReceivedRequest[] = [];

  const pod: TestPod = {
    name,
    ip,
    port: 0,
    behaviour: options.behaviour ?? 'echo',
    slowMs: 200,
    received,
    releaseStreams() {
      for (const release of [...waitingStreams]) release();
    },
    get streamsWaiting() {
      return waitingStreams.size;
    },
    close: async () => {},
    drain: async () => {},
  };

  const answer = (req: IncomingMessage, res: ServerResponse): Promise<void> => answerAs(pod, waitingStreams, req, res);

  const server = http.createServer({ keepAliveTimeout: 5_000, requireHostHeader: false }, (req, res) => {
    answer(req, res).catch(() => res.destroy());
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });

  const wss = echoWebSockets(server, pod);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, ip, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  Object.assign(pod, { port });
  pod.close = async () => {
    pod.releaseStreams();
    wss.close();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sockets) s.destroy();
    await closed;
  };
  pod.drain = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    const sweep = setInterval(() => server.closeIdleConnections(), 50);
    await closed;
    clearInterval(sweep);
    wss.close();
  };
  return pod;
}

/** An address where nothing listens: connections are refused. */
export async function deadAddress(ip: string): Promise<{ ip: string; port: number }> {
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, ip, () => resolve());
  });
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return { ip, port };
}

/** Pods named `prefix-0`, `prefix-1`..., on 127.0.0.(first), 127.0.0.(first+1)... */
export async function startPods(prefix: string, count: number, first = 11): Promise<TestPod[]> {
  const pods: TestPod[] = [];
  for (let i = 0; i < count; i++) pods.push(await startPod(`${prefix}-${i}`, `127.0.0.${first + i}`));
  return pods;
}
