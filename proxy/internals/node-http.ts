import http from 'node:http';
import type { ClientRequest, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Duplex, PassThrough } from 'node:stream';
import { expect, runSelfChecks, type InternalCheck } from '../../src/core/self-check.js';

// The parts of Node's HTTP client and server the proxy uses although Node's documentation
// does not cover them, each with why. Nothing else in the router touches them, and
// selfCheckNodeHttp() tries each one at start the way the proxy uses it.

/** Where one pod listens. */
export interface Destination {
  host: string;
  port: number;
}

type AddRequest = (this: http.Agent, req: ClientRequest, options: object) => void;

/** The agent's own addRequest, which a request calls with its whole options object. */
function agentAddRequest(node: typeof http): AddRequest | undefined {
  const value = (node.Agent.prototype as unknown as { addRequest?: unknown }).addRequest;
  return typeof value === 'function' ? (value as AddRequest) : undefined;
}

const addRequest = agentAddRequest(http);

/**
 * An agent that connects every request to one destination. A proxy library passes the
 * agent the whole options object of the pod's request, and the agent copies it twice per
 * request to choose a socket, most of what choosing one costs; for one pod, where to
 * connect is all it needs. Internal: Agent#addRequest(req, options), given other options.
 */
export class FixedDestinationAgent extends http.Agent {
  private readonly destination: object;

  constructor(destination: Destination, options: http.AgentOptions) {
    super(options);
    // servername: none (plain HTTP to an IP address), so the agent does not work one out per request.
    this.destination = { host: destination.host, port: destination.port, servername: '' };
  }

  // Not in Node's types: the internal this class exists for.
  addRequest(req: ClientRequest): void {
    (addRequest as AddRequest).call(this, req, this.destination);
  }
}

/** What writeRequestHead uses of a request that Node does not document. */
interface HeadRenderer {
  useChunkedEncodingByDefault: boolean;
  _storeHeader(firstLine: string, headers: readonly string[]): void;
}

/**
 * Renders the head of `req`: `firstLine`, then `headers` (a flat [name, value, ...] list) as
 * lines in that order and case, with no Connection header of Node's own, and framing only
 * for a request with a body (`chunkedIfNoLength`: chunked when the list has no length).
 * Node writes a head from a list only through _storeHeader, the routine http.request
 * calls for array headers; a library builds the request from an object keyed by lower-cased
 * name, which would merge repeated names and change their case. Throws when Node refuses a
 * header.
 */
export function writeRequestHead(
  req: ClientRequest,
  firstLine: string,
  headers: readonly string[],
  chunkedIfNoLength: boolean,
): void {
  const renderer = req as unknown as HeadRenderer;
  // Without this, Node frames an empty POST as chunked, or sends a GET's body unframed.
  renderer.useChunkedEncodingByDefault = chunkedIfNoLength;
  // Without this, Node adds "Connection: keep-alive" when the list has none (upstream
  // keep-alive: nginx sends none); a Connection in the list still counts.
  req.removeHeader('connection');
  renderer._storeHeader(firstLine, headers);
}

/** What the HTTP server keeps on a connection's socket that Node does not document. */
interface ServerSocket {
  /** The parser reading the connection, and the request whose head or body it is reading. */
  parser?: { incoming?: { complete: boolean } | null } | null;
  /** The response being written on the connection (pipelined ones wait behind it). */
  _httpMessage?: ServerResponse | null;
  destroySoon?: () => void;
}

/** The request whose body the server is reading on `socket`, if any. */
export function requestBeingRead(socket: Duplex): { complete: boolean } | null {
  return (socket as Duplex & ServerSocket).parser?.incoming ?? null;
}

/** The response the server is writing on `socket`, if any. */
export function responseBeingWritten(socket: Duplex): ServerResponse | null {
  return (socket as Duplex & ServerSocket)._httpMessage ?? null;
}

/**
 * Makes `close` what the HTTP server does to end `socket` after its last answer (an
 * answer that does not keep the connection alive). The server calls the socket's
 * destroySoon for that; replacing it is the one way to linger there, as nginx does.
 */
export function onServerClose(socket: Duplex, close: () => void): void {
  (socket as Duplex & ServerSocket).destroySoon = close;
}

/** Closes `socket` once what was written to it has left: what the server does after a last answer. */
export function closeWhenWritten(socket: Socket): void {
  socket.destroySoon();
}

/** Whether `res` leaves its connection open for another request. */
export function keepsAlive(res: ServerResponse): boolean {
  return (res as ServerResponse & { shouldKeepAlive: boolean }).shouldKeepAlive;
}

/** Makes `res` its connection's last answer: "Connection: close", then the server ends the connection. */
export function lastOnConnection(res: ServerResponse): void {
  (res as ServerResponse & { shouldKeepAlive: boolean }).shouldKeepAlive = false;
}

// --- the self-check ----------------------------------------------------------------------

const CHECK_LINE = 'GET /check HTTP/1.1\r\n';
const CHECK_HEADERS = ['X-Multi', 'a', 'x-multi', 'b', 'Host', 'h'];

/** One request on an agent connecting to a fixed destination, as FixedDestinationAgent does it. */
function probeRequest(node: typeof http): { connectedTo: Destination | null; req: ClientRequest; agent: http.Agent } {
  const own = agentAddRequest(node);
  expect(own !== undefined, 'http.Agent.prototype.addRequest is not a function');
  const found: { connectedTo: Destination | null } = { connectedTo: null };
  class Probe extends node.Agent {
    addRequest(req: ClientRequest): void {
      (own as AddRequest).call(this, req, { host: '192.0.2.7', port: 4321, servername: '' });
    }
    override createConnection(options: { host?: string; port?: number }): Duplex {
      found.connectedTo = { host: String(options.host), port: Number(options.port) };
      return new PassThrough();
    }
  }
  const agent = new Probe();
  const req = node.request({ agent, host: 'example.invalid', port: 1, path: '/' });
  req.on('error', () => {});
  return { connectedTo: found.connectedTo, req, agent };
}

/** What the server did with a connection it was handed: a POST whose body has not come, answered as the last answer. */
interface ServerProbe {
  readingTheRequest: boolean;
  writingTheResponse: boolean;
  keptAliveByDefault: boolean;
  closedThroughDestroySoon: boolean;
}

/** Hands a server a connection (any Duplex will do, Node says) and answers one request on it as the last. */
function probeServer(node: typeof http): Promise<ServerProbe> {
  return new Promise((resolve, reject) => {
    const server = node.createServer();
    const socket = new Duplex({ read() {}, write: (_chunk, _encoding, done) => done() });
    const seen: ServerProbe = {
      readingTheRequest: false,
      writingTheResponse: false,
      keptAliveByDefault: false,
      closedThroughDestroySoon: false,
    };
    const timer = setTimeout(() => finish(), 1_000);
    const finish = (): void => {
      clearTimeout(timer);
      socket.destroy();
      server.close();
      resolve(seen);
    };
    onServerClose(socket, () => {
      seen.closedThroughDestroySoon = true;
      finish();
    });
    server.on('request', (req, res) => {
      seen.readingTheRequest = requestBeingRead(socket) === req;
      seen.writingTheResponse = responseBeingWritten(socket) === res;
      seen.keptAliveByDefault = keepsAlive(res);
      lastOnConnection(res);
      res.end('ok');
    });
    server.on('clientError', (err: Error) => reject(err));
    server.emit('connection', socket);
    socket.push('POST /check HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n');
  });
}

/** The checks of what the proxy uses of `node` (Node's http module, or a stand-in in a test). */
export function nodeHttpChecks(node: typeof http = http): InternalCheck[] {
  let server: Promise<ServerProbe> | null = null;
  const served = (): Promise<ServerProbe> => (server ??= probeServer(node));
  return [
    {
      internal: 'http.Agent.prototype.addRequest(req, options) connects where the options say',
      check() {
        const { connectedTo, req, agent } = probeRequest(node);
        req.destroy();
        agent.destroy();
        expect(
          connectedTo?.host === '192.0.2.7' && connectedTo.port === 4321,
          `it connected to ${JSON.stringify(connectedTo)}, not 192.0.2.7:4321`,
        );
      },
    },
    {
      internal:
        'ClientRequest#_storeHeader(firstLine, headers), after useChunkedEncodingByDefault, removeHeader("connection")',
      check() {
        const { req, agent } = probeRequest(node);
        try {
          writeRequestHead(req, CHECK_LINE, CHECK_HEADERS, false);
          const head = (req as unknown as { _header?: unknown })._header;
          const expected = `${CHECK_LINE}X-Multi: a\r\nx-multi: b\r\nHost: h\r\n\r\n`;
          expect(head === expected, `the head written was ${JSON.stringify(head)}, not ${JSON.stringify(expected)}`);
        } finally {
          req.destroy();
          agent.destroy();
        }
      },
    },
    {
      internal: "the server socket's parser.incoming (the request whose body is being read)",
      async check() {
        expect((await served()).readingTheRequest, 'it is not the request being read');
      },
    },
    {
      internal: "the server socket's _httpMessage (the response being written)",
      async check() {
        expect((await served()).writingTheResponse, 'it is not the response being written');
      },
    },
    {
      internal: 'ServerResponse#shouldKeepAlive = false, then the server ends the connection with socket.destroySoon()',
      async check() {
        const seen = await served();
        expect(seen.keptAliveByDefault, 'shouldKeepAlive is not true for an HTTP/1.1 request');
        expect(seen.closedThroughDestroySoon, 'the server did not call destroySoon after the last answer');
      },
    },
  ];
}

let checked: Promise<void> | null = null;

/** Checks, once per process, that Node's internals are what the proxy expects; throws DependencyChanged if not. */
export function selfCheckNodeHttp(): Promise<void> {
  checked ??= runSelfChecks(`Node ${process.version}`, nodeHttpChecks());
  return checked;
}
