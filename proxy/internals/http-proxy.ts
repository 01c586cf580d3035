import http from 'node:http';
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { PassThrough, type Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import { expect, packageVersion, runSelfChecks, type InternalCheck } from '../../src/core/self-check.js';
import type { UpstreamRequest } from '../upstream-head.js';

// What the router relies on inside its proxy library (http-proxy 1.18.1, or http-proxy-3,
// which has the same insides), each with why: the steps of its pipeline ("passes"), what it
// reads of the request and response it is handed, what it does to the client socket of an
// upgrade, and the deprecation warning it makes Node print. Nothing else in the router
// touches them, and selfCheckProxyLibrary() tries them at start the way the router uses them.

/**
 * A proxy library's createProxyServer. The router uses http-proxy 1.18.1's (see the
 * README for why); http-proxy-3's has the same interface, and the tests and the benchmark
 * pass it to compare the two inside the router.
 */
export type ProxyLibrary = (options: object) => unknown;

// libraryName() recognises the library by this very function, which uses no `this`.
// eslint-disable-next-line @typescript-eslint/unbound-method
export const HTTP_PROXY: ProxyLibrary = httpProxy.createProxyServer;

/** The little of either library's ProxyServer the router uses. */
export interface ProxyServer {
  web(req: unknown, res: unknown, options: object, callback: (err: Error, req: unknown) => void): void;
  ws(req: unknown, socket: unknown, head: Buffer, options: object, callback: (err: Error, req: unknown) => void): void;
  on(event: string, listener: (...args: never[]) => void): unknown;
  webPasses: { name: string }[];
  wsPasses: { name: string }[];
}

/** The passes the stand-ins below are written for, in order. */
const WEB_PASSES = ['deleteLength', 'timeout', 'XHeaders', 'stream'];
const WS_PASSES = ['checkMethodAndHeader', 'XHeaders', 'stream'];
/** The pass that destroys an upgrade that is not a GET for "websocket". */
const UPGRADE_CHECK = 'checkMethodAndHeader';

/** A proxy server of `library` as the router uses one: it writes answers itself, and passes every upgrade on. */
export function createLibraryProxy(library: ProxyLibrary): ProxyServer {
  silenceHttpProxyExtendWarning();
  const proxy = library({
    // The router writes the client's response itself (nginx's header list, not the library's).
    selfHandleResponse: true,
    // The library's own path for the pod's request is not used (the router writes the URI
    // the client sent): not building one saves a parse and a join per request.
    toProxy: true,
    prependPath: false,
    ignorePath: true,
    xfwd: false,
  }) as ProxyServer;
  dropUpgradeCheck(proxy);
  return proxy;
}

/**
 * Both libraries destroy an upgrade that is not a GET for "websocket"; nginx passes any
 * upgrade on to the pod. The check is one of the ws passes, dropped by its name.
 */
function dropUpgradeCheck(proxy: ProxyServer): void {
  const at = proxy.wsPasses.findIndex((pass) => pass.name === UPGRADE_CHECK);
  if (at < 0) throw new Error(`proxy library: its WebSocket passes have no ${UPGRADE_CHECK}`);
  proxy.wsPasses.splice(at, 1);
}

/**
 * The client's request as the library sees it for one try. A library reads the method,
 * URL, headers and socket of the request it proxies, adds listeners to it and pipes it
 * into the pod's request. The router does all of that itself (it writes the head nginx
 * would send, streams the body it keeps for retries, and notices a client that leaves),
 * so the library gets this stand-in: what it adds goes nowhere, and the attempt comes back
 * with every event the library emits about it.
 */
export class LibraryRequest<A> {
  readonly method: string;
  readonly url: string;
  /** What the library copies into the pod's request object; the head itself is written from attempt.request. */
  readonly headers: Record<string, string> = {};
  readonly httpVersion = '1.1';
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor = 1;

  constructor(
    readonly attempt: A & { readonly request: UpstreamRequest },
    readonly socket: Duplex,
  ) {
    this.method = attempt.request.method;
    this.url = attempt.request.uri;
  }

  on(): this {
    return this;
  }

  pipe<T>(destination: T): T {
    return destination;
  }
}

/**
 * The client's response as the library sees it: the router writes the response itself
 * (selfHandleResponse), so there is nothing for the library to watch or finish.
 */
export const LIBRARY_RESPONSE = Object.freeze({
  headersSent: false,
  finished: true,
  writableFinished: true,
  on() {
    return this;
  },
});

// --- the client socket of an upgrade -------------------------------------------------------

/**
 * The client's socket as the library sees it during one upgrade attempt. The libraries'
 * WebSocket passes assume one pod: after an upstream error they end the client socket
 * (end, destroySoon), and they write their own rendering of the pod's answer (a fixed
 * "101 Switching Protocols" line with lower-cased headers, or a copy of a refusal). nginx
 * may try the next pod on that same connection, and passes the pod's status line and
 * header lines as they came. So the router writes the answer's head itself and ends the
 * client connection itself; through this view, the library still pipes the tunnel's bytes
 * both ways once it is open.
 */
export interface ClientSocketView {
  readonly socket: Duplex;
  /** The router wrote the 101 head: the head the library writes next is dropped, and the tunnel is the library's. */
  headWritten(): void;
  /** The router answers the client itself: the library sees a closed socket, and what it writes is dropped. */
  handOver(): void;
}

export function clientSocketView(client: Duplex): ClientSocketView {
  let dropNextWrite = false;
  let tunnelOpen = false;
  let handedOver = false;
  const dropWrite = (_chunk: unknown, encodingOrDone?: unknown, done?: unknown): boolean => {
    dropNextWrite = false;
    const callback = typeof encodingOrDone === 'function' ? encodingOrDone : done;
    if (typeof callback === 'function') process.nextTick(callback);
    return true;
  };
  const ignore = (): void => {};
  const socket = viewOf(client, (key) => {
    if (key === 'destroySoon') return { value: ignore };
    if (key === 'end' && (!tunnelOpen || handedOver)) return { value: ignore };
    if (key === 'destroyed' && handedOver) return { value: true };
    if (key === 'write' && (dropNextWrite || handedOver)) return { value: dropWrite };
    return undefined;
  });
  return {
    socket,
    headWritten: () => {
      dropNextWrite = true;
      tunnelOpen = true;
    },
    handOver: () => (handedOver = true),
  };
}

/** What a view answers for `key`, or undefined to let the target answer. */
type Override = (key: PropertyKey) => { value: unknown } | undefined;

/**
 * `target` seen through `override`. The target's own methods run with the target as
 * `this`: a listener added through the view lands on the target, and the target's
 * internal state (an EventEmitter's listener count, a stream's buffers) stays whole.
 */
function viewOf<T extends object>(target: T, override: Override): T {
  return new Proxy(target, {
    get(object, key) {
      const replaced = override(key);
      if (replaced !== undefined) return replaced.value;
      const value: unknown = Reflect.get(object, key, object);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(object) : value;
    },
  });
}

// --- http-proxy's deprecation warning -------------------------------------------------------

// http-proxy 1.18.1 copies objects with util._extend, which Node 22 and later deprecate
// at run time (DEP0060): the first proxied request would print a DeprecationWarning to
// the router's users about code that is not theirs, nor ours, to change. This drops that
// one warning, and only when it is raised from http-proxy's own files: any other
// warning, a DEP0060 raised by other code included, is emitted as before. (Node prints
// each deprecation code once per process, so once http-proxy's has been dropped a later
// DEP0060 from other code is not printed either, as it would not have been after
// http-proxy's own.)

const EXTEND_CODE = 'DEP0060';
const HTTP_PROXY_FILES = /[\\/]node_modules[\\/]http-proxy[\\/]lib[\\/]/;

let warningFilterInstalled = false;

type EmitWarningArgs = [warning: string | Error, typeOrOptions?: unknown, code?: unknown, ctor?: unknown];

/** The code and the constructor a process.emitWarning call names, in either of its call forms. */
function codeAndCtor(args: EmitWarningArgs): { code: unknown; ctor: unknown } {
  const [, typeOrOptions, code, ctor] = args;
  if (typeOrOptions !== null && typeof typeOrOptions === 'object') {
    const options = typeOrOptions as { code?: unknown; ctor?: unknown };
    return { code: options.code, ctor: options.ctor };
  }
  return { code, ctor };
}

/** The first stack frame outside Node's own modules, above `ctor` when it is given. */
function callerFrame(ctor: unknown): string | undefined {
  const site: { stack?: string } = {};
  Error.captureStackTrace(site, typeof ctor === 'function' ? ctor : callerFrame);
  return site.stack
    ?.split('\n')
    .slice(1)
    .find(
      (line) =>
        !line.includes('(node:') && !line.trimStart().startsWith('at node:') && !line.includes('internals/http-proxy'),
    );
}

/** Whether this process.emitWarning call is http-proxy's DEP0060. */
export function isHttpProxyExtendWarning(...args: EmitWarningArgs): boolean {
  const { code, ctor } = codeAndCtor(args);
  if (code !== EXTEND_CODE) return false;
  const frame = callerFrame(ctor);
  return frame !== undefined && HTTP_PROXY_FILES.test(frame);
}

/** Installs the filter on process.emitWarning (once per process). */
function silenceHttpProxyExtendWarning(): void {
  if (warningFilterInstalled) return;
  warningFilterInstalled = true;
  const emitWarning = process.emitWarning.bind(process) as (...a: EmitWarningArgs) => void;
  process.emitWarning = function emitWarningExceptHttpProxyExtend(this: unknown, ...args: EmitWarningArgs): void {
    if (isHttpProxyExtendWarning(...args)) return;
    emitWarning(...args);
  };
}

// --- the self-check ----------------------------------------------------------------------

const require = createRequire(import.meta.url);
const KNOWN_LIBRARIES = ['http-proxy', 'http-proxy-3'];

/** The package `library` comes from, with its version, as far as it can be told. */
export function libraryName(library: ProxyLibrary): string {
  for (const name of KNOWN_LIBRARIES) {
    try {
      const mod = require(name) as { createProxyServer?: unknown };
      if (mod.createProxyServer === library) return `${name} ${packageVersion(name)}`;
    } catch {
      // not installed: not this one
    }
  }
  return 'the proxy library';
}

/** An agent whose connections go nowhere: the requests of a check are made, never sent. */
class NowhereAgent extends http.Agent {
  override createConnection(): Duplex {
    return new PassThrough();
  }
}

const CHECK_ATTEMPT = { request: { method: 'GET', uri: '/check', headers: [], hasBody: false } };
const CHECK_TARGET = { host: '192.0.2.7', port: 4321, protocol: 'http:' };

/** Resolves with what `emit` saw within a second, or null. */
function within<T>(start: (seen: (value: T) => void) => void): Promise<T | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), 1_000);
    start((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/** One request through `proxy` with the stand-ins: does the library make the pod's request from them? */
async function probeWeb(proxy: ProxyServer): Promise<string | null> {
  const agent = new NowhereAgent();
  try {
    const made = await within<http.ClientRequest>((seen) => {
      proxy.on('proxyReq', (proxyReq: http.ClientRequest) => {
        seen(proxyReq);
        proxyReq.destroy();
      });
      proxy.web(
        new LibraryRequest(CHECK_ATTEMPT, new PassThrough()),
        LIBRARY_RESPONSE,
        { target: CHECK_TARGET, agent },
        () => {},
      );
    });
    return made === null ? 'no request to the pod was made from the stand-in request and response' : null;
  } finally {
    agent.destroy();
  }
}

/** One upgrade through `proxy` with the stand-in request and the client socket's view. */
async function probeUpgrade(proxy: ProxyServer): Promise<string | null> {
  const agent = new NowhereAgent();
  const client = new Socket();
  try {
    const made = await within<http.ClientRequest>((seen) => {
      proxy.on('proxyReqWs', (proxyReq: http.ClientRequest) => {
        seen(proxyReq);
        proxyReq.on('error', () => {});
        proxyReq.destroy();
      });
      // A POST: only an upgrade the library no longer checks reaches the pod.
      const attempt = { request: { ...CHECK_ATTEMPT.request, method: 'POST' } };
      proxy.ws(
        new LibraryRequest(attempt, client),
        clientSocketView(client).socket,
        Buffer.alloc(0),
        { target: CHECK_TARGET, agent },
        () => {},
      );
    });
    return made === null
      ? 'no upgrade request to the pod was made from the stand-in request and the client socket view'
      : null;
  } finally {
    client.destroy();
    agent.destroy();
  }
}

/** The checks of what the router uses inside `library`. */
export function proxyLibraryChecks(library: ProxyLibrary): InternalCheck[] {
  const checks: InternalCheck[] = [
    {
      internal: 'ProxyServer#webPasses, the steps a request goes through',
      check() {
        const names = (library({}) as ProxyServer).webPasses?.map((pass) => pass.name);
        expect(
          JSON.stringify(names) === JSON.stringify(WEB_PASSES),
          `they are ${JSON.stringify(names)}, not ${JSON.stringify(WEB_PASSES)}`,
        );
      },
    },
    {
      internal: `ProxyServer#wsPasses, the steps an upgrade goes through (${UPGRADE_CHECK} is removed)`,
      check() {
        const names = (library({}) as ProxyServer).wsPasses?.map((pass) => pass.name);
        expect(
          JSON.stringify(names) === JSON.stringify(WS_PASSES),
          `they are ${JSON.stringify(names)}, not ${JSON.stringify(WS_PASSES)}`,
        );
      },
    },
    {
      internal: 'ProxyServer#web with a stand-in request and response',
      async check() {
        const problem = await probeWeb(createLibraryProxy(library));
        expect(problem === null, problem ?? '');
      },
    },
    {
      internal: 'ProxyServer#ws with a stand-in request and a view of the client socket',
      async check() {
        const problem = await probeUpgrade(createLibraryProxy(library));
        expect(problem === null, problem ?? '');
      },
    },
  ];
  if (library === HTTP_PROXY) {
    checks.push({
      internal: "DEP0060 (util._extend) from http-proxy's files, dropped from process.emitWarning",
      check() {
        expect(typeof process.emitWarning === 'function', 'process.emitWarning is not a function');
        const file = join(dirname(require.resolve('http-proxy')), 'lib', 'http-proxy', 'common.js');
        expect(HTTP_PROXY_FILES.test(file), `http-proxy's files are not where the filter looks for them (${file})`);
      },
    });
  }
  return checks;
}

const checked = new Map<ProxyLibrary, Promise<void>>();

/** Checks, once per process and library, that its insides are what the router expects (or throws DependencyChanged). */
export function selfCheckProxyLibrary(library: ProxyLibrary): Promise<void> {
  let done = checked.get(library);
  if (done === undefined) {
    done = runSelfChecks(libraryName(library), proxyLibraryChecks(library));
    checked.set(library, done);
  }
  return done;
}
