import net from 'node:net';
import { parseResponse, serializeRequest } from '../conformance/raw-http.js';

// Load through the router, counted by the client, byte for byte: each request is either
// answered (with a status), refused (no connection), or dropped (the connection ended
// before a whole response), and for a dropped one the client knows whether any byte of a
// response had come. Clients either open a new connection per request or keep one alive.
//
// A kept-alive connection the server closes (nginx does so to idle connections when old
// workers retire after a reload, and both backends when they stop) can take the next
// request just as it closes. Such a request got no byte back and was never accepted:
// RFC 9112 9.3.1 lets a client send it again, as browsers and curl do. The client does so
// once, on a new connection, and counts it apart. A request that got any byte back is
// never sent again.

export interface LoadTarget {
  port: number;
  host: string;
  path?: string;
}

export type Outcome =
  | { kind: 'response'; status: number; pod: string | undefined }
  | { kind: 'refused' }
  | { kind: 'dropped'; bytes: number; reused: boolean; error: string };

export interface RequestRecord {
  id: string;
  sentAt: number;
  doneAt: number;
  outcome: Outcome;
  /** Set when the first try went out on a kept-alive connection the server had closed. */
  resent: boolean;
}

const HEADER_POD = 'x-pod';

/** One HTTP exchange on `socket`: resolves with the response, or how the connection ended. */
function exchange(
  socket: net.Socket,
  request: Buffer,
  reused: boolean,
  timeoutMs: number,
): Promise<Outcome & { keepAlive: boolean }> {
  return new Promise((resolve) => {
    let data = Buffer.alloc(0);
    let done = false;
    const finish = (outcome: Outcome, keepAlive = false): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      resolve({ ...outcome, keepAlive });
    };
    /** Finishes with the response once it is whole; a body read to the end is whole once the connection closed. */
    const settle = (closed: boolean): boolean => {
      const response = parseResponse(data, false, closed);
      if (response === null || response.kind !== 'response') return false;
      const header = (name: string): string | undefined =>
        response.headers.find(([k]) => k.toLowerCase() === name)?.[1];
      finish(
        { kind: 'response', status: response.status, pod: header(HEADER_POD) },
        !closed && !/close/i.test(header('connection') ?? ''),
      );
      return true;
    };
    const onData = (chunk: Buffer): void => {
      data = Buffer.concat([data, chunk]);
      settle(false);
    };
    const onEnd = (): void => {
      if (!settle(true)) finish({ kind: 'dropped', bytes: data.length, reused, error: 'connection closed' });
    };
    const onError = (err: NodeJS.ErrnoException): void =>
      finish({ kind: 'dropped', bytes: data.length, reused, error: err.code ?? err.message });
    const timer = setTimeout(
      () => finish({ kind: 'dropped', bytes: data.length, reused, error: `no response in ${timeoutMs} ms` }),
      timeoutMs,
    );
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
    socket.write(request);
  });
}

function connect(port: number): Promise<net.Socket | 'refused' | Error> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      socket.on('error', () => {});
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' ? 'refused' : err));
  });
}

export interface ClientOptions {
  keepAlive: boolean;
  /** Names each request (sent as x-request-id). */
  idPrefix: string;
  timeoutMs?: number;
  /** Extra request headers. */
  headers?: [string, string][];
}

/** A client sending one request at a time. */
export class LoadClient {
  private socket: net.Socket | null = null;
  private seq = 0;
  readonly records: RequestRecord[] = [];

  constructor(
    private readonly target: LoadTarget,
    private readonly options: ClientOptions,
  ) {}

  private requestBytes(id: string): Buffer {
    return serializeRequest({
      method: 'GET',
      target: this.target.path ?? '/',
      headers: [
        ['Host', this.target.host],
        ['X-Request-Id', id],
        ...(this.options.keepAlive ? [] : [['Connection', 'close'] as [string, string]]),
        ...(this.options.headers ?? []),
      ],
    });
  }

  private async once(id: string): Promise<Outcome> {
    const reused = this.socket !== null;
    let socket = this.socket;
    if (socket === null) {
      const connected = await connect(this.target.port);
      if (connected === 'refused') return { kind: 'refused' };
      if (connected instanceof Error) return { kind: 'dropped', bytes: 0, reused: false, error: connected.message };
      socket = connected;
    }
    this.socket = null;
    const outcome = await exchange(socket, this.requestBytes(id), reused, this.options.timeoutMs ?? 10_000);
    if (this.options.keepAlive && outcome.kind === 'response' && outcome.keepAlive) this.socket = socket;
    else socket.destroy();
    const { keepAlive: _keepAlive, ...rest } = outcome;
    return rest;
  }

  /** Sends one request; resends once (on a new connection) what a closed kept-alive connection never took. */
  async send(): Promise<RequestRecord> {
    const id = `${this.options.idPrefix}-${++this.seq}`;
    const sentAt = Date.now();
    let outcome = await this.once(id);
    let resent = false;
    if (outcome.kind === 'dropped' && outcome.reused && outcome.bytes === 0) {
      resent = true;
      outcome = await this.once(id);
    }
    const record = { id, sentAt, doneAt: Date.now(), outcome, resent };
    this.records.push(record);
    return record;
  }

  close(): void {
    this.socket?.destroy();
    this.socket = null;
  }
}

export interface LoadSummary {
  requests: number;
  ok: number;
  /** Answered with a status outside 2xx, by status. */
  non2xx: Record<string, number>;
  refused: number;
  /** Connections that ended before a whole response, with no byte of one / with some. */
  droppedBeforeAnyByte: number;
  droppedMidResponse: number;
  resent: number;
  /** Answers by pod. */
  pods: Record<string, number>;
  /** A few failures other than refused connections, to print. */
  samples: string[];
}

export function summarize(records: readonly RequestRecord[]): LoadSummary {
  const summary: LoadSummary = {
    requests: records.length,
    ok: 0,
    non2xx: {},
    refused: 0,
    droppedBeforeAnyByte: 0,
    droppedMidResponse: 0,
    resent: 0,
    pods: {},
    samples: [],
  };
  for (const r of records) {
    if (r.resent) summary.resent++;
    const o = r.outcome;
    if (o.kind === 'response') {
      if (o.status >= 200 && o.status < 300) summary.ok++;
      else summary.non2xx[o.status] = (summary.non2xx[o.status] ?? 0) + 1;
      summary.pods[o.pod ?? '?'] = (summary.pods[o.pod ?? '?'] ?? 0) + 1;
      if (o.status >= 300 && summary.samples.length < 10)
        summary.samples.push(`${r.id}: status ${o.status} at ${new Date(r.doneAt).toISOString()}`);
      continue;
    }
    if (o.kind === 'refused') {
      summary.refused++;
      continue;
    }
    if (o.bytes === 0) summary.droppedBeforeAnyByte++;
    else summary.droppedMidResponse++;
    if (summary.samples.length < 10)
      summary.samples.push(`${r.id}: ${JSON.stringify(o)} at ${new Date(r.doneAt).toISOString()}`);
  }
  return summary;
}

/** Runs `clients` loops of requests until `running()` turns false; returns every record. */
export async function runLoad(
  target: LoadTarget,
  clients: number,
  options: Omit<ClientOptions, 'idPrefix'> & { idPrefix: string },
  running: () => boolean,
): Promise<RequestRecord[]> {
  const loops = Array.from({ length: clients }, async (_, i) => {
    const client = new LoadClient(target, { ...options, idPrefix: `${options.idPrefix}${i}` });
    try {
      while (running()) {
        const { outcome } = await client.send();
        // Nothing listens, or nothing answers: do not spin.
        if (outcome.kind !== 'response') await new Promise((resolve) => setTimeout(resolve, 5));
      }
    } finally {
      client.close();
    }
    return client.records;
  });
  return (await Promise.all(loops)).flat();
}
