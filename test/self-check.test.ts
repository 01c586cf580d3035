import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, it } from 'node:test';
import { Watch } from '@kubernetes/client-node';
import { createProxyServer } from 'http-proxy-3';
import {
  HTTP_PROXY,
  libraryName,
  proxyLibraryChecks,
  type ProxyLibrary,
  type ProxyServer,
} from '../proxy/internals/http-proxy.js';
import { nodeHttpChecks } from '../proxy/internals/node-http.js';
import { startProxy } from '../proxy/server.js';
import { errorCodeInfo } from '../src/core/error-codes.js';
import { DependencyChanged, runSelfChecks } from '../src/core/self-check.js';
import { kubernetesClientChecks } from '../src/sources/internals/kubernetes-client.js';

// The router uses Node, its proxy library and the Kubernetes client through a few
// internals, each in one module with a check of it that runs at start. These run the
// checks on what is installed (they pass), and on stand-ins that lack an internal (they
// fail with one line naming the dependency, its version and the internal).

/** The one line a failed check stops the router with. */
async function failure(run: Promise<unknown>): Promise<DependencyChanged> {
  try {
    await run;
  } catch (err) {
    assert.ok(err instanceof DependencyChanged, `a DependencyChanged, not ${String(err)}`);
    assert.equal(err.code, 'KR_DEPENDENCY_CHANGED');
    assert.doesNotMatch(err.message, /\n/, 'one line');
    return err;
  }
  assert.fail('the checks passed');
}

describe('self-checks of the internals the router uses', () => {
  it("pass on this Node's http and net", async () => {
    await runSelfChecks(`Node ${process.version}`, nodeHttpChecks());
  });

  it('pass on http-proxy and on http-proxy-3, each named with its version', async () => {
    for (const library of [HTTP_PROXY, createProxyServer as ProxyLibrary]) {
      assert.match(libraryName(library), /^http-proxy(-3)? \d+\.\d+\.\d+$/);
      await runSelfChecks(libraryName(library), proxyLibraryChecks(library));
    }
  });

  it('pass on @kubernetes/client-node', async () => {
    await runSelfChecks('@kubernetes/client-node', kubernetesClientChecks());
  });

  it('fail on a Node whose Agent has no addRequest', async () => {
    class NoAddRequest extends http.Agent {}
    Object.defineProperty(NoAddRequest.prototype, 'addRequest', { value: undefined });
    const standIn = { ...http, Agent: NoAddRequest };
    const err = await failure(runSelfChecks('Node 99.0.0', nodeHttpChecks(standIn)));
    assert.equal(
      err.message,
      'Node 99.0.0 is not what the router expects: ' +
        'http.Agent.prototype.addRequest(req, options) connects where the options say: ' +
        'http.Agent.prototype.addRequest is not a function',
    );
  });
});

describe('self-checks of the internals the router uses: failures', () => {
  it('fail on a Node whose server never ends a connection through destroySoon', async () => {
    // A server that ends a last answer's connection some other way: lingering would never start.
    const createServer = ((...args: Parameters<typeof http.createServer>) => {
      const server = http.createServer(...args);
      server.prependListener('connection', (socket: { destroySoon?: unknown }) => {
        Object.defineProperty(socket, 'destroySoon', { value: undefined, writable: false, configurable: true });
      });
      return server;
    }) as typeof http.createServer;
    const err = await failure(runSelfChecks('Node 99.0.0', nodeHttpChecks({ ...http, createServer })));
    assert.ok(
      err.message.startsWith(
        'Node 99.0.0 is not what the router expects: ' +
          'ServerResponse#shouldKeepAlive = false, then the server ends the connection with socket.destroySoon(): ',
      ),
      err.message,
    );
  });

  it('fail on a proxy library whose upgrades no longer go through checkMethodAndHeader', async () => {
    const renamed: ProxyLibrary = (options) => {
      const proxy = HTTP_PROXY(options) as ProxyServer;
      proxy.wsPasses = proxy.wsPasses.filter((pass) => pass.name !== 'checkMethodAndHeader');
      return proxy;
    };
    const err = await failure(runSelfChecks(libraryName(renamed), proxyLibraryChecks(renamed)));
    assert.equal(
      err.message,
      'the proxy library is not what the router expects: ' +
        'ProxyServer#wsPasses, the steps an upgrade goes through (checkMethodAndHeader is removed): ' +
        'they are ["XHeaders","stream"], not ["checkMethodAndHeader","XHeaders","stream"]',
    );
  });

  it('stop startProxy before it listens, with the code the CLI exits 1 for', async () => {
    const broken: ProxyLibrary = (options) => {
      const proxy = HTTP_PROXY(options) as ProxyServer;
      proxy.webPasses = [];
      return proxy;
    };
    const err = await failure(startProxy({ port: 0, host: '127.0.0.1', proxyLibrary: broken }));
    assert.match(err.message, /^the proxy library is not what the router expects: ProxyServer#webPasses/);
    assert.equal(errorCodeInfo(err.code).exit, 1);
  });

  it('fail on a Kubernetes client whose Watch makes its request without its KubeConfig', async () => {
    class OwnWatch extends Watch {
      override async watch(
        _path: string,
        _query: object,
        _callback: unknown,
        done: (err: unknown) => void,
      ): Promise<AbortController> {
        done(new Error('connection refused'));
        return new AbortController();
      }
    }
    const err = await failure(runSelfChecks('@kubernetes/client-node 9.9.9', kubernetesClientChecks(OwnWatch)));
    assert.match(
      err.message,
      /^@kubernetes\/client-node 9\.9\.9 is not what the router expects: Watch#watch\(\) .*: the Watch did not ask/,
    );
  });
});
